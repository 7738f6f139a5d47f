import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real QEMU and RabbitMQ; give them room but never hang CI.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['./test/global-setup.ts'],
    reporters: ['default', './test/plain-summary-reporter.ts'],
    // libvirt logs warnings to stderr by default; keep its errors only, as the CLI does.
    env: { LIBVIRT_LOG_OUTPUTS: '4:stderr' },
  },
});
