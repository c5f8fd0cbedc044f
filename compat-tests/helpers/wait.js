// Bounded waiting primitives. Every wait in the suite goes through one of these.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `predicate` (sync or async) until it returns a truthy value; returns that value. `message` may be a function. */
export async function waitFor(predicate, timeoutMs = 5000, { interval = 20, message } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const msg = typeof message === 'function' ? message() : message;
      const e = new Error(`waitFor timed out after ${timeoutMs} ms${msg ? `: ${msg}` : ''}${lastErr ? ` (last error: ${lastErr.message})` : ''}`);
      throw e;
    }
    await sleep(interval);
  }
}

/**
 * Resolves with the arguments array of the next `event` on `emitter` (socket.io-client emitters, EventEmitters).
 * Rejects after timeoutMs. If `rejectOn` names events, those reject early (with their first argument).
 */
export function once(emitter, event, timeoutMs = 5000, { rejectOn = [] } = {}) {
  return new Promise((resolve, reject) => {
    const off = (ev, fn) => (emitter.off ? emitter.off(ev, fn) : emitter.removeListener(ev, fn));
    const cleanup = () => {
      clearTimeout(timer);
      off(event, onEvent);
      for (const [ev, fn] of rejecters) off(ev, fn);
    };
    const onEvent = (...args) => {
      cleanup();
      resolve(args);
    };
    const rejecters = rejectOn.map((ev) => [
      ev,
      (arg) => {
        cleanup();
        const err = arg instanceof Error ? arg : new Error(`${ev} while waiting for ${event}: ${JSON.stringify(arg)}`);
        if (!(arg instanceof Error)) err.data = arg;
        reject(err);
      },
    ]);
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    emitter.on(event, onEvent);
    for (const [ev, fn] of rejecters) emitter.on(ev, fn);
  });
}

/** Records every occurrence of `event` on `emitter` (first argument, or all arguments with {all:true}). */
export function collect(emitter, event, { all = false } = {}) {
  const items = [];
  const fn = (...args) => items.push(all ? args : args[0]);
  emitter.on(event, fn);
  items.stop = () => (emitter.off ? emitter.off(event, fn) : emitter.removeListener(event, fn));
  /** Waits until at least n items were recorded. */
  items.waitCount = (n, timeoutMs = 5000) =>
    waitFor(() => items.length >= n, timeoutMs, { message: () => `expected ${n} "${event}" events, have ${items.length}` }).then(() => items);
  return items;
}

/** Rejects if `promise` does not settle within ms. */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]);
}
