/**
 * Built-in modules the daemon loads on first use instead of at start: a
 * start that runs no hook, logs to a file and resolves no host name never
 * needs them, and each costs milliseconds to load (measured here:
 * `node:child_process` 4.8 ms, `node:dns/promises` 1.4 ms), which every
 * restart paid before its first packet.
 */
import { createRequire } from 'node:module';
import type * as ChildProcessModule from 'node:child_process';
import type * as DnsPromisesModule from 'node:dns/promises';

const requireBuiltin = createRequire(import.meta.url);

/** `node:child_process` (hooks, the syslog `logger` child, detaching). */
export function childProcess(): typeof ChildProcessModule {
  return requireBuiltin('node:child_process') as typeof ChildProcessModule;
}

/** `node:dns/promises` (BNL endpoints given as host names). */
export function dnsPromises(): typeof DnsPromisesModule {
  return requireBuiltin('node:dns/promises') as typeof DnsPromisesModule;
}
