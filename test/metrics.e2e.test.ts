/**
 * Prometheus metrics end to end: two real daemons in a namespace lab, one
 * serving `metrics=` on its VPN address and one on localhost, scraped with
 * `curl` inside the namespaces; the text is parsed strictly and the counters
 * must move with the traffic a ping sends.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeNetwork, startNode, pingFrom, type RunningNode } from './lib/cluevpn.js';
import { createLab, requireLab, type Lab } from './lib/lab.js';
import { parsePrometheusText, type PromText } from './lib/prometheus.js';
import { waitFor } from './lib/wait-for.js';

const METRICS_PORT = 9587;
/** Echo requests sent through the tunnel; each counter must grow by at least this. */
const N = 20;

/** `curl` in lab host `from`; the parsed text on HTTP 200, else rejects with curl's output. */
async function scrape(lab: Lab, from: string, url: string): Promise<PromText> {
  const r = await lab.exec(from, 'curl', ['-sS', '--fail', '--max-time', '10', url], { timeoutMs: 20_000 });
  return parsePrometheusText(r.stdout);
}

test('metrics: scraped with curl on the VPN address (through the tunnel) and on localhost; counters move with traffic', { timeout: 180_000 }, async (t) => {
  if (!requireLab(t, { tools: { curl: 'curl' } })) return;
  const dir = mkdtempSync(join(tmpdir(), 'metrics-e2e-'));
  const lab = await createLab({ hosts: 2 });
  const nodes: RunningNode[] = [];
  t.after(async () => {
    for (const n of nodes) if (n.process.running()) await n.process.stop('SIGTERM', 3000);
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const net = await makeNetwork(join(dir, 'net'), { net: 'mon', pullInterval: '2s', nodes: [['alpha', lab.hosts[0]!.ipv4], ['beta', lab.hosts[1]!.ipv4]] });
  // alpha on its VPN address (10.99.0.1), beta on localhost only
  appendFileSync(net.conf('alpha'), `metrics=10.99.0.1:${METRICS_PORT}\n`);
  appendFileSync(net.conf('beta'), `metrics=127.0.0.1:${METRICS_PORT}\n`);
  const alpha = await startNode(lab, 'h1', net.nodeDir('alpha'));
  nodes.push(alpha);
  const beta = await startNode(lab, 'h2', net.nodeDir('beta'));
  nodes.push(beta);
  const alphaUrl = `http://10.99.0.1:${METRICS_PORT}/metrics`;
  const betaUrl = `http://127.0.0.1:${METRICS_PORT}/metrics`;

  // keys first: one ping that answers
  await waitFor(async () => (await pingFrom(lab, 'h1', '10.99.0.2', 1, 1)).received === 1, { timeoutMs: 30_000, intervalMs: 0, description: 'alpha → beta through the tunnel' });

  const a0 = await scrape(lab, 'h1', alphaUrl);
  const b0 = await scrape(lab, 'h2', betaUrl);
  assert.equal(a0.types.get('cluevpn_peer_tx_packets_total'), 'counter');
  assert.equal(a0.types.get('cluevpn_peer_key_age_seconds'), 'gauge');
  assert.equal(a0.value('cluevpn_peer_state', { peer: 'beta', state: 'up' }), 1);
  assert.equal(a0.value('cluevpn_peer_path', { peer: 'beta', path: 'direct' }), 1);
  assert.ok((a0.value('cluevpn_peer_negotiations_total', { peer: 'beta' }) ?? 0) + (b0.value('cluevpn_peer_negotiations_total', { peer: 'alpha' }) ?? 0) >= 1, 'a negotiation took place');
  assert.ok((a0.value('cluevpn_peer_key_age_seconds', { peer: 'beta' }) ?? -1) >= 0, 'key age of a keyed peer');
  const st = await alpha.status();
  assert.equal(a0.value('cluevpn_bnl_serial'), st.bnl.serial, 'the serial cluevpn status shows');
  assert.equal(a0.value('cluevpn_info', { node: 'alpha', netname: st.netname }), 1);
  assert.ok((a0.value('process_resident_memory_bytes') ?? 0) > 1e6, 'process memory');
  assert.ok((a0.value('cluevpn_control_accepted_total') ?? 0) + (b0.value('cluevpn_control_accepted_total') ?? 0) >= 1, 'the negotiation came over an accepted control connection');

  const ping = await pingFrom(lab, 'h1', '10.99.0.2', N, 2);
  assert.equal(ping.received, N, `all ${N} echo requests answered`);

  const a1 = await scrape(lab, 'h1', alphaUrl);
  const b1 = await scrape(lab, 'h2', betaUrl);
  const grew = (before: PromText, after: PromText, name: string, peer: string): number => (after.value(name, { peer }) ?? 0) - (before.value(name, { peer }) ?? 0);
  const moved = {
    alphaTx: grew(a0, a1, 'cluevpn_peer_tx_packets_total', 'beta'),
    alphaRx: grew(a0, a1, 'cluevpn_peer_rx_packets_total', 'beta'),
    betaRx: grew(b0, b1, 'cluevpn_peer_rx_packets_total', 'alpha'),
    betaTx: grew(b0, b1, 'cluevpn_peer_tx_packets_total', 'alpha'),
    alphaTxBytes: grew(a0, a1, 'cluevpn_peer_tx_bytes_total', 'beta'),
  };
  t.diagnostic(`counters moved by ${JSON.stringify(moved)} for ${N} pings`);
  assert.ok(moved.alphaTx >= N && moved.alphaRx >= N && moved.betaRx >= N && moved.betaTx >= N, JSON.stringify(moved));
  assert.ok(moved.alphaTxBytes >= N * 84, `tx bytes grew by ${moved.alphaTxBytes}, at least ${N} × 84-byte echo requests`);
  // last-rx is fresh after the ping
  assert.ok((a1.value('cluevpn_peer_last_rx_seconds', { peer: 'beta' }) ?? Infinity) < 60);

  // beta's endpoint answers on localhost only: not on its underlay or VPN address
  const outside = await lab.exec('h1', 'curl', ['-sS', '--max-time', '5', `http://${lab.hosts[1]!.ipv4}:${METRICS_PORT}/metrics`], { check: false, timeoutMs: 15_000 });
  assert.notEqual(outside.code, 0, 'beta bound to 127.0.0.1 is not reachable from h1');
  // alpha's, bound to its VPN address, is reachable from beta's host through the tunnel
  const viaTunnel = await scrape(lab, 'h2', alphaUrl);
  assert.equal(viaTunnel.value('cluevpn_info', { node: 'alpha' }), 1);

  // stopping closes the endpoint with the daemon
  assert.equal((await alpha.process.stop('SIGTERM', 5000)).code, 0);
  const gone = await lab.exec('h1', 'curl', ['-sS', '--max-time', '5', alphaUrl], { check: false, timeoutMs: 15_000 });
  assert.notEqual(gone.code, 0, 'nothing answers after the daemon stopped');
});
