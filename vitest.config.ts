import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real QEMU and RabbitMQ; give them room but never hang CI.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['./test/global-setup.ts'],
    // libvirt's own log goes to a file, as the CLI's does (test/libvirt-log.ts).
    setupFiles: ['./test/libvirt-log.ts'],
    reporters: ['default', './test/plain-summary-reporter.ts'],
  },
});
