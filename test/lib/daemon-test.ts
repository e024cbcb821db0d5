/**
 * The frame of an end-to-end test of real `cluevpnd` nodes: skip when the
 * lab cannot run here, a lab and a temporary directory, the nodes' logs
 * printed when the test did not pass, and everything removed afterwards.
 *
 * ```ts
 * const env = await daemonTest(t, { hosts: 2 }, 'rekey-e2e-');
 * if (env === null) return;          // skipped, with the reason
 * env.nodes.push(await startNode(env.lab, 'h1', net.nodeDir('alpha')));
 * …
 * env.passed();                      // the last line: no logs printed
 * ```
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { RunningNode } from './cluevpn.js';
import { createLab, requireLab, type CreateLabOptions, type Lab, type LabTools } from './lab.js';

/** What {@link daemonTest} sets up. */
export interface DaemonTestEnv {
  lab: Lab;
  /** A fresh temporary directory, removed after the test. */
  dir: string;
  /** Nodes whose logs are printed (last 4000 characters) when the test fails. */
  nodes: RunningNode[];
  /** Marks the test as passed (call it last). */
  passed(): void;
}

/** Sets up the frame, or skips `t` with the reason and returns null (under CI a missing requirement fails instead). `tools`: extra commands the test needs. */
export async function daemonTest(t: TestContext, labOptions: CreateLabOptions, dirPrefix: string, tools: LabTools = {}): Promise<DaemonTestEnv | null> {
  if (!requireLab(t, { tools })) return null;
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  let lab: Lab;
  try {
    lab = await createLab(labOptions);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let ok = false;
  const env: DaemonTestEnv = { lab, dir, nodes: [], passed: () => void (ok = true) };
  t.after(async () => {
    if (!ok) for (const n of env.nodes) t.diagnostic(`--- ${n.name} log ---\n${n.log().slice(-4000)}`);
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return env;
}
