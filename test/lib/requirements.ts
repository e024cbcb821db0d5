/**
 * What a test needs from the machine, and what happens when it is missing:
 * on a developer's machine the test is skipped with the reason; under CI
 * (`CI=true`) the run fails and says what is missing, so CI can never pass
 * by skipping (issue 16).
 *
 * Two layers use the one decision, {@link requirementOutcome}:
 *
 *  1. in a test, `requireLab(t)` (lab.ts) or {@link requireOrSkip}: under CI
 *     a missing requirement throws `ERR_TEST_REQUIREMENT`, so that test fails;
 *  2. for every other skip (the `{ skip }` option of node:test in the
 *     package tests), `scripts/test` adds the reporter `skip-reporter.ts`,
 *     which lists every skipped test with its reason; under CI
 *     {@link skipSummary} turns that list into a failure of the run.
 */
import { TestLibError } from './errors.js';

/** The environment variables the decision reads. */
export type RequirementEnv = Readonly<Record<string, string | undefined>>;

/**
 * True when the run is CI's: `CI` is `true` or `1` (any case), as GitHub
 * Actions, GitLab and most CI systems set it. Unset, empty or `false`: not CI.
 */
export function isCi(env: RequirementEnv = process.env): boolean {
  const v = (env.CI ?? '').trim().toLowerCase();
  return v === 'true' || v === '1';
}

/** What to do about a requirement: run the test, skip it, or fail it. */
export type RequirementOutcome =
  | { kind: 'run' }
  | { kind: 'skip'; message: string }
  | { kind: 'fail'; error: TestLibError };

/**
 * The decision: `missing` is null when the machine has what `what` needs,
 * else the reason (`'needs root'`). Outside CI a missing requirement skips;
 * under CI it fails with `ERR_TEST_REQUIREMENT`, naming what is missing.
 */
export function requirementOutcome(what: string, missing: string | null, env: RequirementEnv = process.env): RequirementOutcome {
  if (missing === null) return { kind: 'run' };
  if (isCi(env)) {
    return {
      kind: 'fail',
      error: new TestLibError('ERR_TEST_REQUIREMENT', `CI=true and ${what} cannot run here: ${missing}. CI must run every test: give the runner what is missing.`),
    };
  }
  return { kind: 'skip', message: `${what} skipped: ${missing}` };
}

/**
 * For node:test: returns true when the test can run; otherwise skips it
 * (returns false) or, under CI, throws `ERR_TEST_REQUIREMENT`. Use as
 * `if (!requireOrSkip(t, 'end-to-end lab test', reason)) return;`.
 */
export function requireOrSkip(t: { skip(message?: string): void }, what: string, missing: string | null, env: RequirementEnv = process.env): boolean {
  const o = requirementOutcome(what, missing, env);
  if (o.kind === 'run') return true;
  if (o.kind === 'fail') throw o.error;
  t.skip(o.message);
  return false;
}

/** One skipped test, as the skip reporter records it. */
export interface SkippedTest {
  /** The test file (absolute path), when node:test names it. */
  file?: string;
  /** The test's name. */
  name: string;
  /** The skip message, or '' when the test gave none. */
  reason: string;
}

/**
 * What the run must say about its skipped tests: null when there is nothing
 * to say (no skip, or not CI); under CI with skips, a message that fails the
 * run, listing each distinct reason with the number of tests and one example.
 */
export function skipSummary(skips: readonly SkippedTest[], env: RequirementEnv = process.env): string | null {
  if (skips.length === 0 || !isCi(env)) return null;
  const byReason = new Map<string, SkippedTest[]>();
  for (const s of skips) {
    const key = s.reason === '' ? '(no reason given)' : s.reason;
    const list = byReason.get(key) ?? [];
    list.push(s);
    byReason.set(key, list);
  }
  const lines = [`CI=true: ${skips.length} test(s) skipped; CI must run every test. Missing:`];
  for (const [reason, list] of byReason) {
    const ex = list[0]!;
    lines.push(`  ${reason} — ${list.length} test(s), e.g. "${ex.name}"${ex.file ? ` (${ex.file})` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
