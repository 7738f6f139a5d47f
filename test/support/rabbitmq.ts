import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'amqplib';

/**
 * A private RabbitMQ for one test file: its own node name, ports, Erlang
 * cookie, epmd and data folder, on 127.0.0.1 only, so tests never touch (nor
 * depend on) the system's RabbitMQ.
 *
 * Debian's /usr/sbin/rabbitmq-server and rabbitmqctl are wrappers that, run
 * as root, `su rabbitmq` (so HOME is /var/lib/rabbitmq and the Erlang cookie
 * there is read as its owner). The harness does the same without su: it runs
 * the scripts under /usr/lib/rabbitmq/bin with the rabbitmq user's uid and
 * gid, and HOME set to its temp folder, which holds a cookie of its own.
 *
 * epmd: an Erlang node starts an epmd daemon (detached, in a session of its
 * own) when none answers on ERL_EPMD_PORT, which would outlive the test. So
 * the harness runs `epmd -port <free port>` itself, in the foreground, as its
 * own child, before the node, and ends it in stop(). Every process the
 * instance starts carries NOVALET_RABBITMQ_HARNESS=<folder> in its
 * environment; stop() (and, should the test process exit early, an exit
 * hook) SIGKILLs whatever still carries it, then removes the folder.
 */
export interface RabbitMqHandle {
  /** amqp://guest:guest@127.0.0.1:PORT/ (guest may log in from loopback). */
  url: string;
  /** The same as [DEFAULT] transport_url writes it: rabbit://guest:guest@127.0.0.1:PORT/ */
  transportUrl: string;
  port: number;
  /** The TLS listener's port, when started with `tls`. */
  tlsPort: number | null;
  nodeName: string;
  /** The temp folder (owned by rabbitmq) holding its data and logs. */
  dir: string;
  /** `rabbitmqctl -n NODE ...args` as the rabbitmq user; its stdout. */
  ctl(args: string[]): Promise<string>;
  /** rabbitmqctl stop, then epmd and every leftover process ended, and the folder removed. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start again on the same port and data. */
  restart(): Promise<void>;
  /** SIGKILL the node (a crash); restart() or stop() afterwards. */
  kill(): void;
}

const SBIN = '/usr/lib/rabbitmq/bin';
const MARKER = 'NOVALET_RABBITMQ_HARNESS';
const READY_TIMEOUT_MS = 90_000;
const CTL_TIMEOUT_MS = 60_000;

interface Account {
  uid: number;
  gid: number;
}

function rabbitmqAccount(): Account {
  const line = execFileSync('getent', ['passwd', 'rabbitmq'], { encoding: 'utf8' }).trim();
  const [, , uid, gid] = line.split(':');
  const account = { uid: Number(uid), gid: Number(gid) };
  const me = process.getuid?.();
  if (me !== 0 && me !== account.uid) throw new Error('startRabbitMq needs root (or the rabbitmq user) to run RabbitMQ as the rabbitmq user.');
  return account;
}

/** Distinct free ports on 127.0.0.1, all held open at once so that none is given twice. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Processes of the instance in `dir`: those whose environment carries its marker (zombies have none). */
export function markedProcesses(dir: string): number[] {
  const needle = Buffer.from(`\0${MARKER}=${dir}\0`);
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const environ = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${name}/environ`)]);
      if (environ.includes(needle)) pids.push(Number(name));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A TLS listener besides the plain one: the server's PEM files, and the CA its clients' certificates must come from. */
export interface RabbitMqTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A client must present a certificate that the CA signed (RabbitMQ's verify_peer + fail_if_no_peer_cert). */
  requireClientCertificate: boolean;
}

export async function startRabbitMq(options: { tls?: RabbitMqTls } = {}): Promise<RabbitMqHandle> {
  const account = rabbitmqAccount();
  const [port, distPort, epmdPort, tlsPort] = (await freePorts(4)) as [number, number, number, number];
  const nodeName = `novalet-test-${randomBytes(4).toString('hex')}@localhost`;
  const dir = mkdtempSync(path.join(tmpdir(), 'novalet-rabbitmq-'));
  chmodSync(dir, 0o700);
  chownSync(dir, account.uid, account.gid);
  const own = (file: string, text: string, mode: number): void => {
    writeFileSync(path.join(dir, file), text, { mode });
    chownSync(path.join(dir, file), account.uid, account.gid);
  };
  own('.erlang.cookie', randomBytes(16).toString('hex').toUpperCase(), 0o400);
  own('enabled_plugins', '[].\n', 0o644);
  // A config and env file of its own: /etc/rabbitmq's are the system broker's.
  const tls = options.tls;
  if (tls) {
    // Copies it may read as the rabbitmq user.
    own('tls-ca.pem', readFileSync(tls.caFile, 'utf8'), 0o644);
    own('tls-cert.pem', readFileSync(tls.certFile, 'utf8'), 0o644);
    own('tls-key.pem', readFileSync(tls.keyFile, 'utf8'), 0o600);
  }
  own(
    'rabbitmq.conf',
    tls
      ? [
          `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
          `ssl_options.cacertfile = ${path.join(dir, 'tls-ca.pem')}`,
          `ssl_options.certfile = ${path.join(dir, 'tls-cert.pem')}`,
          `ssl_options.keyfile = ${path.join(dir, 'tls-key.pem')}`,
          `ssl_options.verify = ${tls.requireClientCertificate ? 'verify_peer' : 'verify_none'}`,
          `ssl_options.fail_if_no_peer_cert = ${tls.requireClientCertificate}`,
          '',
        ].join('\n')
      : '',
    0o644,
  );
  own('rabbitmq-env.conf', '', 0o644);

  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: dir,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    [MARKER]: dir,
    ERL_EPMD_PORT: String(epmdPort),
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_FEATURE_FLAGS_FILE: path.join(dir, 'feature_flags'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
    // Erlang distribution on loopback only, as AMQP.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const asRabbitmq = { uid: account.uid, gid: account.gid, env, cwd: dir };

  let epmd: ChildProcess | null = null;
  let server: ChildProcess | null = null;
  let stopped: Promise<void> | null = null;

  const exitHook = (): void => {
    killAll(markedProcesses(dir));
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', exitHook);

  const logTail = (): string => {
    const read = (file: string): string => {
      try {
        return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
      } catch {
        return '';
      }
    };
    return `${read(path.join(dir, 'server.out'))}\n${read(path.join(dir, 'log', `${nodeName}.log`))}`;
  };

  const startEpmd = async (): Promise<void> => {
    const out = openSync(path.join(dir, 'epmd.out'), 'a');
    epmd = spawn('epmd', ['-port', String(epmdPort), '-address', '127.0.0.1'], { ...asRabbitmq, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(epmdPort))) {
      if (exited(epmd) || Date.now() > deadline) throw new Error(`epmd did not start on port ${epmdPort}: ${readFileSync(path.join(dir, 'epmd.out'), 'utf8')}`);
      await delay(50);
    }
  };

  const startNode = async (): Promise<void> => {
    const out = openSync(path.join(dir, 'server.out'), 'a');
    const child = spawn(path.join(SBIN, 'rabbitmq-server'), [], { ...asRabbitmq, detached: true, stdio: ['ignore', out, out] });
    server = child;
    closeSync(out);
    // Ready when an AMQP connection opens: the listener starts last in the boot.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited(child)) throw new Error(`RabbitMQ ${nodeName} exited while starting:\n${logTail()}`);
      if (Date.now() > deadline) throw new Error(`RabbitMQ ${nodeName} did not accept AMQP connections within ${READY_TIMEOUT_MS / 1000} s:\n${logTail()}`);
      if ((await canConnect(port)) && (!tls || (await canConnect(tlsPort)))) {
        try {
          const connection = await connect(`amqp://guest:guest@127.0.0.1:${port}/`);
          await connection.close();
          return;
        } catch {
          // Listening, not yet serving.
        }
      }
      await delay(200);
    }
  };

  const ctl = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(path.join(SBIN, 'rabbitmqctl'), ['-n', nodeName, ...args], { ...asRabbitmq, timeout: CTL_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      });
    });

  /** The node down: rabbitmqctl stop, SIGKILL of whatever of it remains (not epmd). */
  const stopNode = async (): Promise<void> => {
    const child = server;
    if (!child) return;
    server = null;
    if (!exited(child)) {
      await ctl(['stop']).catch(() => undefined);
      if (!(await waitExit(child, 30_000))) {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // Gone already.
        }
        await waitExit(child, 5_000);
      }
    }
    await sweep(epmd?.pid);
  };

  /** SIGKILL every marked process but `spare`, until none is left. */
  const sweep = async (spare?: number): Promise<void> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const left = markedProcesses(dir).filter((pid) => pid !== spare);
      if (left.length === 0) return;
      if (Date.now() > deadline) throw new Error(`Processes of RabbitMQ ${nodeName} did not end: ${left.join(', ')}`);
      killAll(left);
      await delay(100);
    }
  };

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      try {
        await stopNode();
        const daemon = epmd;
        epmd = null;
        if (daemon && !exited(daemon)) {
          daemon.kill('SIGTERM');
          if (!(await waitExit(daemon, 5_000))) daemon.kill('SIGKILL');
          await waitExit(daemon, 5_000);
        }
        await sweep();
      } finally {
        rmSync(dir, { recursive: true, force: true });
        process.off('exit', exitHook);
      }
    })();
    return stopped;
  };

  try {
    await startEpmd();
    await startNode();
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }

  return {
    url: `amqp://guest:guest@127.0.0.1:${port}/`,
    transportUrl: `rabbit://guest:guest@127.0.0.1:${port}/`,
    port,
    tlsPort: tls ? tlsPort : null,
    nodeName,
    dir,
    ctl,
    stop,
    restart: async () => {
      await stopNode();
      await startNode();
    },
    kill: () => {
      const child = server;
      if (child?.pid) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      killAll(markedProcesses(dir).filter((pid) => pid !== epmd?.pid));
    },
  };
}
