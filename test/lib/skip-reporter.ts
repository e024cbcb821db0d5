/**
 * A node:test reporter (`--test-reporter=test/dist/lib/skip-reporter.js`)
 * that writes nothing unless the run is CI's and a test was skipped; then it
 * writes {@link skipSummary}'s message: every reason with its count. It
 * writes to its own destination file, which `scripts/test` checks after the
 * run: a non-empty file fails the run (see requirements.ts).
 */
import { skipSummary, type SkippedTest } from './requirements.js';

/** The part of a node:test reporter event this reporter reads. */
interface ReporterEvent {
  type: string;
  data?: { name?: string; file?: string; skip?: string | boolean; details?: { type?: string } };
}

/** Collects the skipped tests of a run from its reporter events (suites included: a skipped `describe` counts once). */
export function skippedTests(events: Iterable<ReporterEvent>): SkippedTest[] {
  const out: SkippedTest[] = [];
  for (const ev of events) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    const skip = ev.data?.skip;
    if (skip === undefined || skip === false) continue;
    const s: SkippedTest = { name: ev.data?.name ?? '?', reason: typeof skip === 'string' ? skip : '' };
    if (ev.data?.file !== undefined) s.file = ev.data.file;
    out.push(s);
  }
  return out;
}

/** The reporter: node:test calls it with the run's event stream. */
export default async function* skipReporter(source: AsyncIterable<ReporterEvent>): AsyncGenerator<string> {
  const events: ReporterEvent[] = [];
  for await (const ev of source) {
    if (ev.type === 'test:pass' || ev.type === 'test:fail') events.push(ev);
  }
  const summary = skipSummary(skippedTests(events));
  if (summary !== null) yield summary;
}
