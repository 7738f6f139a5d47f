/**
 * The program each libvirt call thread runs (a Node worker thread, started
 * from this text with `eval: true` so that it works the same from the built
 * JavaScript and from TypeScript under vitest).
 *
 * A request names a C prototype, its arguments and how the function signals
 * failure. The thread calls the function synchronously and, when it failed,
 * reads libvirt's error with virGetLastError() *on the same OS thread*, before
 * any other libvirt call can run there: libvirt keeps the last error in
 * thread-local storage and every public API call resets it on entry, so this
 * is the only moment and the only thread where the error of this call exists.
 * The answer carries the result and the error together.
 *
 * Pointers cross between threads as integers (uintptr_t): koffi's pointer
 * objects cannot be posted to another thread, an address can.
 */
export const CALL_WORKER_SOURCE = String.raw`
// Valid as a CommonJS script and as an ES module (a worker evaluates its text
// as a module when the process runs with --input-type=module): only dynamic
// import(), no require, no top-level await.
(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
const { createRequire } = await import('node:module');
const koffi = createRequire(workerData.koffiPath)(workerData.koffiPath);
const lib = koffi.load(workerData.soname);

const virError = koffi.struct('novalet_virError', {
  code: 'int',
  domain: 'int',
  message: 'const char *',
  level: 'int',
  conn: 'void *',
  dom: 'void *',
  str1: 'const char *',
  str2: 'const char *',
  str3: 'const char *',
  int1: 'int',
  int2: 'int',
  net: 'void *',
});
const virGetLastError = lib.func('novalet_virError *virGetLastError(void)');

const functions = new Map();
function declared(proto) {
  let fn = functions.get(proto);
  if (fn === undefined) {
    fn = lib.func(proto);
    functions.set(proto, fn);
  }
  return fn;
}

function failed(signal, value) {
  if (signal === 'negative') return typeof value === 'number' && value < 0;
  if (signal === 'null') return value === null || value === 0 || value === undefined;
  return false;
}

function lastError() {
  const pointer = virGetLastError();
  if (pointer === null) return null;
  const e = koffi.decode(pointer, virError);
  return {
    code: e.code,
    domain: e.domain,
    level: e.level,
    message: e.message,
    str1: e.str1,
    str2: e.str2,
    str3: e.str3,
    int1: e.int1,
    int2: e.int2,
  };
}

// An array of pointers that libvirt allocated (virConnectListAllDomains):
// read it as addresses, then free the array itself (not its elements).
function takePointerArray(holder, count) {
  const array = holder[0];
  if (array === null || array === undefined) return [];
  const addresses = count > 0 ? koffi.decode(array, 'uintptr_t', count) : [];
  koffi.free(array);
  return Array.from(addresses, Number);
}

parentPort.on('message', (request) => {
  let reply;
  try {
    const args = request.args;
    const value = declared(request.proto)(...args);
    if (failed(request.fails, value)) {
      reply = { id: request.id, ok: false, error: lastError() };
    } else {
      if (typeof request.pointerArrayArg === 'number') {
        args[request.pointerArrayArg] = takePointerArray(args[request.pointerArrayArg], value);
      }
      reply = { id: request.id, ok: true, value, args };
    }
  } catch (thrown) {
    reply = { id: request.id, ok: false, thrown: String((thrown && thrown.message) || thrown) };
  }
  parentPort.postMessage(reply);
});
// koffi and libvirt.so.0 are loaded: the thread may now be stopped at any time.
parentPort.postMessage({ ready: true });
})();
`;
