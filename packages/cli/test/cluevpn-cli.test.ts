import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushSummary, renderGraph, renderStatus, humanAgo, humanBytes, humanCount } from '../src/control/render.js';
import type { StatusReport } from '../src/control/protocol.js';

const BIN = fileURLToPath(new URL('../../bin/cluevpn', import.meta.url));

function report(): StatusReport {
  const peer = {
    id: 2, endpoint: '10.9.0.2:3406', state: 'up' as const, cipher: 'aes-256-gcm', compression: 'none',
    keyAgeMs: 65_000, lastRxMs: 2_000, lastKeepaliveTxMs: 20_000, lastKeepaliveRxMs: null, lastNegotiationMs: 65_000, restored: false, negotiations: 1,
    pmtu: 1280 as number | null, innerMtu: 1216, pmtuAgeMs: 120_000 as number | null,
    rxPackets: 1500, rxBytes: 2_000_000, txPackets: 12, txBytes: 900, drops: { replay: 3, 'bad-mac': 0 }, bnlSerial: 7, subnets: ['10.42.2.0/24'],
  };
  return {
    name: 'alpha', id: 1, netname: 'lab', pid: 42, version: '0.1.0', uptimeMs: 301_000, device: 'lab', port: 3406, logLevel: 5,
    bnl: { serial: 7, signedAt: null, nodes: 3, path: '/etc/cluevpn/lab/bnl', peers: { beta: 7, 'ga"mma': 6 } },
    peers: [
      { ...peer, name: 'beta', path: 'direct' as const, observedEndpoint: '10.9.0.2:3406' },
      { ...peer, name: 'ga"mma', id: 3, state: 'idle', cipher: null, compression: null, keyAgeMs: null, lastRxMs: null, bnlSerial: 6, drops: {}, pmtu: null, pmtuAgeMs: null },
    ],
    drops: { 'unknown-index': 4 },
    memory: { rss: 70 * 1048576, heapUsed: 12_500_000, heapTotal: 20 * 1048576, external: 3 * 1048576, arrayBuffers: 2 * 1048576 },
    loaded: 'bundle (code cache accepted)',
  };
}

test('status table shows every per-peer field the issue asks for', () => {
  const out = renderStatus(report());
  const [header, bnl, memory, drops, cols, beta, gamma] = out.split('\n');
  assert.match(header!, /alpha \(id 1\) network lab, pid 42, up 5m1s/);
  assert.match(bnl!, /BNL serial 7, 3 nodes/);
  assert.equal(memory, 'memory: rss 70MiB, V8 heap 12MiB used of 20MiB, external 3.0MiB (buffers 2.0MiB)');
  assert.equal(humanBytes(900), '900 B');
  assert.equal(humanBytes(1536), '1.5KiB');
  assert.match(drops!, /unknown-index=4/);
  assert.match(cols!, /^PEER +STATE +ENDPOINT +PATH +CIPHER +COMP +KEY AGE +NEGS +LAST RX +KEEPALIVE OUT\/IN +PMTU +RX PKTS +RX BYTES +TX PKTS +TX BYTES +BNL +DROPS$/);
  assert.match(beta!, /^beta +up +10\.9\.0\.2:3406 +direct +aes-256-gcm +none +1m5s +1 +2s +20s\/never +1280 \(inner 1216, 2m0s\) +1\.5K +1\.9M +12 +900 +7 +replay=3$/);
  assert.match(gamma!, /^ga"mma +idle +10\.9\.0\.2:3406 +- +- +- +never +1 +never +20s\/never .* 6\* +-$/);
  assert.equal(humanAgo(90_061_000), '1d1h');
  assert.equal(humanCount(999), '999');
});

test('switch mode adds one status line with the MAC table counters; router mode has none', () => {
  assert.doesNotMatch(renderStatus(report()), /switch mode/);
  const sw = renderStatus({
    ...report(),
    mode: 'switch',
    switch: { macs: [{ mac: '02:00:00:00:00:01', owner: 'local', fixed: false, seenAgoMs: 10 }, { mac: '02:00:00:00:00:02', owner: 'beta', fixed: true, seenAgoMs: null }], size: 2, learned: 5, moved: 1, full: 0, flooded: 9, unicast: 40 },
  });
  assert.match(sw.split('\n')[3]!, /^switch mode: 2 MACs \(1 local\), learned 5, moved 1, refused for room 0; frames flooded 9, unicast 40/);
});

test('a reload answer reads as pushed to N of M, with failures and background pushes when there are any', () => {
  assert.equal(pushSummary({ pushedTo: 4, pushTargets: 4, pushFailed: 0, pushPending: 0 }), 'pushed to 4 of 4 nodes');
  assert.equal(pushSummary({ pushedTo: 1, pushTargets: 1, pushFailed: 0, pushPending: 0 }), 'pushed to 1 of 1 node');
  assert.equal(pushSummary({ pushedTo: 3, pushTargets: 5, pushFailed: 1, pushPending: 1 }), 'pushed to 3 of 5 nodes (1 failed, 1 still trying in the background)');
  assert.equal(pushSummary({ pushedTo: 0, pushTargets: 998, pushFailed: 0, pushPending: 998 }), 'pushed to 0 of 998 nodes (998 still trying in the background)');
});

test('graph is valid-looking DOT with escaped names, link state and traffic, stale serials marked', () => {
  const dot = renderGraph(report());
  assert.match(dot, /^digraph "cluevpn lab" \{/);
  assert.match(dot, /"alpha" -> "beta" \[label="up\\naes-256-gcm\\nout 12 pkts 900B\\nin 1\.5K pkts 1\.9MB", color=darkgreen/);
  assert.match(dot, /"ga\\"mma" \[label="ga\\"mma\\nid 3\\nBNL 6", color=red\];/);
  assert.match(dot, /"alpha" -> "ga\\"mma" \[label="idle\\n/);
  assert.ok(dot.trimEnd().endsWith('}'));
  // balanced quotes on every line (ignoring escaped ones)
  for (const line of dot.split('\n')) assert.equal((line.replace(/\\"/g, '').match(/"/g) ?? []).length % 2, 0, line);
});

test('status shows the relay counters when the node is a relay or used one', () => {
  const r = report();
  assert.doesNotMatch(renderStatus(r), /relay:|behind NAT:/);
  r.relay = { relay: true, located: 3, splices: 2, splicesActive: 1, splicedBytes: 2048, refused: { ERR_RELAY_LIMIT: 1 }, locateSent: 0, punches: 0, dialled: 0, reverseLegs: 0, dropped: {} };
  assert.match(renderStatus(r), /^relay: 3 rendezvous answered, 2 connections joined \(1 open, 2\.0KiB\), refused ERR_RELAY_LIMIT=1; behind NAT: 0 punches/m);
});

test('graph draws a relayed link differently from a direct one, naming the relay', () => {
  const r = report();
  r.peers.push({ ...r.peers[0]!, name: 'delta', id: 4, path: 'via beta' });
  const dot = renderGraph(r);
  assert.match(dot, /"alpha" -> "beta" \[label="up\\n[^\]]*color=darkgreen, penwidth=2\];/);
  assert.match(dot, /"alpha" -> "delta" \[label="via beta\\nup\\n[^\]]*color=blue, style="dashed,bold"\];/);
  assert.match(dot, /"beta" -> "delta" \[color=blue, style=dotted/);
  assert.doesNotMatch(dot, /"alpha" -> "delta" [^\n]*darkgreen/);
});

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => resolve({ code, out, err }));
  });
}

test('the cluevpn command talks to the daemon found through -c, and exits 3 when none answers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmn-cli-'));
  const conf = join(dir, 'cluevpn.conf');
  writeFileSync(conf, `name=alpha\ncontrolsocket=ctl.sock\n`);
  const env = { CLUEVPN_RUNDIR: join(dir, 'run') };
  try {
    const none = await run(['-c', conf, 'status'], env);
    assert.equal(none.code, 3);
    assert.match(none.err, /^cluevpn: no daemon answers on .*ctl\.sock/);
    const server = createServer((s) => {
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        const req = JSON.parse(d) as { id: number; cmd: string; level?: number };
        const result = req.cmd === 'status' ? report() : { level: req.level, previous: 5 };
        s.write(`${JSON.stringify({ v: 1, id: req.id, ok: true, result })}\n`);
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, 'ctl.sock'), r));
    try {
      const status = await run(['-c', conf, 'status'], env);
      assert.equal(status.code, 0, status.err);
      assert.match(status.out, /^beta +up /m);
      const json = await run(['-c', conf, 'status', '--json'], env);
      assert.equal((JSON.parse(json.out) as StatusReport).peers.length, 2);
      const lvl = await run(['-c', conf, 'log-level', '7'], env);
      assert.equal(lvl.out, 'log level 5 -> 7\n');
      const bad = await run(['-c', conf, 'log-level', '9'], env);
      assert.equal(bad.code, 2);
      const graph = await run(['-c', conf, 'graph'], env);
      assert.match(graph.out, /^digraph/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
