/**
 * Reading lists, drafts and keys from disk, with every failure turned into
 * a {@link BnlCliError} (one line, exit code). Writes are atomic.
 */
import { readFileSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import {
  BnlError,
  BnlValidationError,
  atomicWriteFile,
  createUnsignedBnl,
  formatProblem,
  parseBnl,
  parsePrivateKey,
  parsePublicKey,
  type Bnl,
  type SignedBnl,
} from '@cluevpn/bnl';
import { BnlCliError, BnlExit } from './exit-codes.js';
import type { BnlPaths } from './paths.js';

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** Reads a file whole; missing or unreadable → exit 4 with `hint`. */
export function readBytes(path: string, hint: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = errnoOf(err);
    throw new BnlCliError(BnlExit.file, code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path} (${code ?? String(err)})`, hint, { cause: err });
  }
}

/** True if `path` exists. */
export function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw new BnlCliError(BnlExit.file, `cannot access ${path} (${errnoOf(err) ?? String(err)})`, 'check the path and its permissions', { cause: err });
  }
}

/** Maps a package error on a list file to a CLI error. `exit` for parse failures (5 for signed lists, 3 for edits). */
export function listError(err: unknown, path: string, exit: number): BnlCliError {
  if (err instanceof BnlValidationError) {
    const p = err.problems[0];
    const more = err.problems.length > 1 ? ` (and ${err.problems.length - 1} more problems)` : '';
    return new BnlCliError(exit, `${path}: ${p ? formatProblem(p) : 'invalid'}${more}`, 'fix the list with bnl modify/remove, or print it with bnl print', { cause: err });
  }
  if (err instanceof BnlError) {
    const hint =
      err.code === 'ERR_BNL_TRUNCATED' || err.code === 'ERR_BNL_FORMAT'
        ? 'the file is damaged or not a BNL; copy a good list again'
        : err.code === 'ERR_BNL_VERSION'
          ? 'upgrade this bnl command'
          : err.code === 'ERR_BNL_TOO_LARGE'
            ? 'a BNL is at most 4 MiB'
            : 'recreate the file with bnl sign';
    return new BnlCliError(exit, `${path}: ${err.message} [${err.code}]`, hint, { cause: err });
  }
  return err instanceof BnlCliError ? err : new BnlCliError(BnlExit.internal, `${path}: ${String(err)}`, 'run again with --debug and report it', { cause: err });
}

/** Parses a list file (signed or draft). Parse errors exit with `exit`. */
export function loadList(path: string, exit: number = BnlExit.verify): SignedBnl {
  const bytes = readBytes(path, 'give the right path with --file, or create the list with bnl new');
  try {
    return parseBnl(bytes);
  } catch (err) {
    throw listError(err, path, exit);
  }
}

/** The list to edit: the draft if there is one, else a copy of the signed list. */
export function loadDraft(paths: BnlPaths): Bnl {
  if (exists(paths.draft)) return loadList(paths.draft, BnlExit.invalid).bnl;
  if (exists(paths.signed)) return loadList(paths.signed).bnl;
  throw new BnlCliError(BnlExit.file, `no draft at ${paths.draft} and no list at ${paths.signed}`, 'start one with bnl new --network NAME (or give --file/-n)');
}

/** Validates and writes the draft atomically; nothing is written when invalid (exit 3). */
export async function saveDraft(paths: BnlPaths, bnl: Bnl): Promise<SignedBnl> {
  let list: SignedBnl;
  try {
    list = createUnsignedBnl(bnl);
  } catch (err) {
    throw listError(err, paths.draft, BnlExit.invalid);
  }
  await writeFileAtomic(paths.draft, list.bytes, 0o644);
  return list;
}

/** Atomic write with CLI error mapping. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  try {
    await atomicWriteFile(path, data, mode);
  } catch (err) {
    throw new BnlCliError(BnlExit.file, `cannot write ${path}: ${(err as Error).message}`, 'check that the directory exists and is writable', { cause: err });
  }
}

/** Loads a private key file; refuses files readable by group or others (exit 6). The key text never reaches a message. */
export function loadPrivateKey(path: string): KeyObject {
  const bytes = readBytes(path, 'give the .key file written by bnl keygen');
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new BnlCliError(BnlExit.key, `private key ${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')})`, `run chmod 600 ${path}, and make a new key if others may have read it`);
  }
  try {
    return parsePrivateKey(bytes.toString('utf8'));
  } catch (err) {
    throw new BnlCliError(BnlExit.key, `${path} is not an Ed25519 private key (${(err as BnlError).code ?? 'unreadable'})`, 'give the .key file written by bnl keygen', { cause: err });
  }
}

/** A public key given as a file path (hex or PEM inside) or directly as 64 hex digits. */
export function loadPublicKey(arg: string): string {
  if (/^[0-9a-fA-F]{64}$/.test(arg)) return arg.toLowerCase();
  const bytes = readBytes(arg, 'give the .pub file written by bnl keygen, or the key as 64 hex digits');
  try {
    return parsePublicKey(bytes.toString('utf8'));
  } catch (err) {
    throw new BnlCliError(BnlExit.key, `${arg} is not a BNL public key`, 'give the .pub file written by bnl keygen, or the key as 64 hex digits', { cause: err });
  }
}
