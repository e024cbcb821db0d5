/**
 * End to end with real `cluevpnd` nodes: promises that were proven only
 * in-process until now (issue 16). One network from `examples/make-network`
 * (three nodes: alpha, beta, gamma) in one lab; the steps run in order:
 *
 *  1. LZ4 negotiated between two daemons (alpha and beta prefer it, which
 *     the defaults never do): `cluevpn status --json` names it on both, pings
 *     flow, and zero-filled pings cross the underlay compressed (the bytes
 *     counted by an iptables rule on beta are a fraction of the inner bytes)
 *  2. rekey under traffic (`rekey=10s`): a ping flow (20/s) across at least
 *     two rekeys loses nothing, the key age resets, the receiver index on
 *     the wire changes at least twice (new keys in use) and no datagram is
 *     dropped
 *  3. signer-key rotation to a 2-of-3 list: serial 2, signed by the
 *     network's key, declares three new signers with threshold 2; a list
 *     signed by one of them is refused (from disk and over the wire), the
 *     same list cosigned by a second is taken by every node; a list signed
 *     by the old key only is refused; a restarted node keeps the rotated
 *     trust
 *  4. the spoof check: a member (alpha's keys, from alpha's address)
 *     sends with gamma's inner source address: beta drops each packet and
 *     counts it as `spoofed`, while the same packets from alpha's own inner
 *     address are delivered
 *
 * Needs root, `ip netns`, /dev/net/tun, ping, iptables and tcpdump; skips otherwise
 * (fails under CI=true, see lib/requirements.ts).
 */
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createCipheriv } from 'node:crypto';
import { parseBnl } from '@cluevpn/bnl';
import { encodeHeader, HEADER_LEN, MessageType, TAG_LEN } from '@cluevpn/dataplane';
import { StateStore } from '@cluevpn/negotiation';
import { icmp4Echo } from '@cluevpn/tun/testing';
import { bnl, cluevpn, makeNetwork, pingFrom, sendDatagrams, startNode, udpDatagramsFromPcap, type Network, type PeerStatus, type RunningNode, type StatusReport } from './lib/cluevpn.js';
import { createLab, everyRequestAnswered, listNamespaces, requireLab, type Lab } from './lib/lab.js';
import { parsePing, repliedSeqs } from './lib/ping.js';
import { createSteps } from './lib/steps.js';
import { waitFor } from './lib/wait-for.js';

const here = dirname(fileURLToPath(import.meta.url));
const GOSSIP_PUSH = join(here, 'fixtures', 'gossip-push.js');
const PORT = 3406;
/** The network name (make-network `--net`). */
const NET = 'feat';
/** Generous deadline: it only catches a hang (a busy machine is slow). */
const SETTLE_MS = 30_000;
const inner4 = (i: number): string => `10.99.0.${i}`;
const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

/** Bytes and packets counted by the first iptables INPUT rule whose line matches `re`. */
async function inputCounter(lab: Lab, host: string, re: RegExp): Promise<{ packets: number; bytes: number }> {
  const r = await lab.exec(host, 'iptables', ['-w', '-n', '-v', '-x', '-L', 'INPUT']);
  const line = r.stdout.split('\n').find((l) => re.test(l));
  assert.ok(line !== undefined, `no INPUT rule matching ${re} on ${host}: ${r.stdout}`);
  const [packets, bytes] = line.trim().split(/\s+/).map(Number);
  return { packets: packets!, bytes: bytes! };
}

test('real daemons: LZ4, rekey under traffic without loss, signer rotation to 2-of-3, the spoof check', { timeout: 300_000 }, async (t) => {
  if (!requireLab(t, { tools: { iptables: 'iptables', tcpdump: 'tcpdump' } })) return;
  const dir = mkdtempSync(join(tmpdir(), 'feat-e2e-'));
  let lab: Lab | null = null;
  let prefix = '';
  const nodes = new Map<string, RunningNode>();
  const steps = createSteps(t);
  const step = steps.step;
  try {
    lab = await createLab({ hosts: 3 });
    prefix = lab.prefix;
    const L = lab;
    const net: Network = await makeNetwork(join(dir, 'net'), {
      net: NET,
      pullInterval: '2s',
      nodes: [
        ['alpha', L.hosts[0]!.ipv4],
        ['beta', L.hosts[1]!.ipv4],
        ['gamma', L.hosts[2]!.ipv4],
      ],
    });
    // alpha and beta prefer LZ4 (the defaults, none:0:10 lz4:1:5, never choose it) and rekey every 10 s
    for (const n of ['alpha', 'beta']) appendFileSync(net.conf(n), 'compalgos=lz4:1:20 none:0:5\nrekey=10s\n');
    const start = async (name: string, host: string): Promise<RunningNode> => {
      const n = await startNode(L, host, net.nodeDir(name));
      nodes.set(name, n);
      return n;
    };
    const pingsWithin = (from: string, target: string): Promise<boolean> =>
      waitFor(async () => (await pingFrom(L, from, target, 1, 1)).received === 1, { timeoutMs: SETTLE_MS, intervalMs: 0, description: `${from} → ${target} ping` });

    await step('1. LZ4 negotiated between two daemons: named by status --json on both, traffic flows, compressible payload crosses the wire compressed', async (st) => {
      const [alpha, beta] = await Promise.all([start('alpha', 'h1'), start('beta', 'h2')]);
      await pingsWithin('h1', inner4(2));
      for (const [n, peer] of [['alpha', 'beta'], ['beta', 'alpha']] as const) {
        const r = await cluevpn('-c', net.conf(n), 'status', '--json');
        assert.equal(r.code, 0, r.stderr);
        const p = (JSON.parse(r.stdout) as StatusReport).peers.find((x) => x.name === peer);
        assert.equal(p?.compression, 'lz4:1', `${n}: compression with ${peer}`);
      }
      // count the underlay bytes beta receives from alpha's data port
      await L.exec('h2', 'iptables', ['-w', '-I', 'INPUT', '-p', 'udp', '-s', L.hosts[0]!.ipv4, '--dport', String(PORT), '-m', 'comment', '--comment', 'feat-lz4']);
      const rule = /feat-lz4/;
      const wireBefore = await inputCounter(L, 'h2', rule);
      const innerBefore = (await beta.peer('alpha')).rxBytes;
      const count = 20;
      const size = 1200;
      // -w: wait for the replies (a busy machine answers late), loss by sequence number
      const r = await L.exec('h1', 'ping', ['-n', '-c', String(count), '-i', '0.05', '-w', '30', '-s', String(size), '-p', '00', inner4(2)], { check: false, timeoutMs: 60_000 });
      assert.ok(everyRequestAnswered(parsePing(r.stdout), count), r.stdout);
      const wire = await inputCounter(L, 'h2', rule);
      const inner = (await beta.peer('alpha')).rxBytes - innerBefore;
      const wireBytes = wire.bytes - wireBefore.bytes;
      st.diagnostic(`${count} echo requests of ${size + 28} inner bytes: ${inner} inner bytes arrived as ${wireBytes} bytes on the underlay (${wire.packets - wireBefore.packets} packets)`);
      assert.ok(inner >= count * (size + 28), `beta delivered the full inner packets (${inner} bytes)`);
      // uncompressed, each would take at least size + 28 + 36 + 28 bytes on the wire
      assert.ok(wireBytes < inner / 4, `compressed on the wire: ${wireBytes} bytes for ${inner} inner bytes`);
      assert.equal((await alpha.peer('beta')).compression, 'lz4:1');
    });

    await step('2. rekey between real daemons under traffic: two rekeys or more, nothing lost, key age resets', async (st) => {
      const alpha = nodes.get('alpha')!;
      const beta = nodes.get('beta')!;
      const first = await alpha.peer('beta');
      const firstB = await beta.peer('alpha');
      const negotiated = (a: PeerStatus, b: PeerStatus): number => a.negotiations + b.negotiations;
      const n0 = negotiated(first, firstB);
      const dropsBefore = sum(first.drops) + sum(firstB.drops) + sum((await alpha.status()).drops) + sum((await beta.status()).drops);
      // the underlay, to see the keys change on the wire (the receiver index of each data datagram)
      const pcap = join(dir, 'rekey.pcap');
      const dump = L.spawn('h2', 'tcpdump', ['-i', 'eth0', '--immediate-mode', '-U', '-n', '-w', pcap, 'udp', 'and', 'dst', 'port', String(PORT), 'and', 'src', 'host', L.hosts[0]!.ipv4], { label: 'tcpdump beta' });
      await dump.waitForOutput(/listening on/, { timeoutMs: SETTLE_MS, stream: 'stderr' });
      const flow = L.spawn('h1', 'ping', ['-n', '-i', '0.05', '-W', '5', inner4(2)], { label: 'ping flow' });
      try {
        await flow.waitForOutput(/icmp_seq=1 /, { timeoutMs: SETTLE_MS, stream: 'stdout' });
        // watch the key age until two rekeys completed (each one negotiation, counted by its initiator)
        const ages: number[] = [];
        let resets = 0;
        await waitFor(
          async () => {
            const a = await alpha.peer('beta');
            const b = await beta.peer('alpha');
            if (a.keyAgeMs !== null) {
              if (ages.length > 0 && a.keyAgeMs < ages[ages.length - 1]!) resets++;
              ages.push(a.keyAgeMs);
            }
            return negotiated(a, b) >= n0 + 2 && resets >= 2;
          },
          { timeoutMs: 90_000, intervalMs: 250, description: 'two rekeys between alpha and beta' },
        );
        // then keep the flow going: 40 more replies on the newest keys
        const seen = repliedSeqs(flow.stdout()).length;
        await waitFor(() => repliedSeqs(flow.stdout()).length >= seen + 40, { timeoutMs: SETTLE_MS, description: '40 more replies after the second rekey' });
        st.diagnostic(`key age resets seen: ${resets}; negotiations ${n0} → ${negotiated(await alpha.peer('beta'), await beta.peer('alpha'))}`);
      } finally {
        await flow.stop('SIGINT', 5000);
        await dump.stop('SIGINT', 5000);
      }
      // byte 0 = version 1 << 4 | type 1 (data); the receiver index is bytes 4..8 (ARCHITECTURE.md)
      const indices: number[] = [];
      for (const d of udpDatagramsFromPcap(pcap)) {
        if (d.payload.length < 36 || d.payload[0] !== 0x11) continue;
        const index = d.payload.readUInt32BE(4);
        if (indices[indices.length - 1] !== index) indices.push(index);
      }
      st.diagnostic(`receiver indices alpha → beta on the wire, in order: ${indices.join(' → ')}`);
      assert.ok(new Set(indices).size >= 3, `the data plane switched keys at least twice on the wire (${indices.join(', ')})`);
      const out = flow.stdout();
      const seqs = repliedSeqs(out);
      const max = Math.max(...seqs);
      const got = new Set(seqs);
      const missing: number[] = [];
      for (let s = 1; s <= max; s++) if (!got.has(s)) missing.push(s);
      st.diagnostic(`ping flow: ${seqs.length} replies up to icmp_seq ${max}; ${out.split('\n').find((l) => l.includes('transmitted')) ?? ''}`);
      assert.deepEqual(missing, [], 'no echo request or reply lost across the rekeys');
      assert.ok(seqs.length > 100, `a real flow (${seqs.length} replies)`);
      const a = await alpha.peer('beta');
      const b = await beta.peer('alpha');
      const dropsAfter = sum(a.drops) + sum(b.drops) + sum((await alpha.status()).drops) + sum((await beta.status()).drops);
      assert.equal(dropsAfter, dropsBefore, `no datagram dropped: ${JSON.stringify([a.drops, b.drops])}`);
      assert.ok(a.keyAgeMs !== null && first.keyAgeMs !== null && a.keyAgeMs < 15_000, `keys renewed (age ${a.keyAgeMs} ms)`);
      assert.equal(a.compression, 'lz4:1', 'the new keys keep the negotiated compression');
    });

    await step('3. signer-key rotation to a 2-of-3 list, applied by running daemons', async (st) => {
      const gamma = await start('gamma', 'h3');
      const running = (): RunningNode[] => [...nodes.values()];
      const serialOf = async (n: RunningNode): Promise<number> => (await n.status()).bnl.serial;
      const allAt = (serial: number): Promise<unknown> =>
        Promise.all(running().map((n) => waitFor(async () => (await serialOf(n)) === serial, { timeoutMs: SETTLE_MS, intervalMs: 100, description: `${n.name} at serial ${serial}` })));
      await pingsWithin('h3', inner4(1));
      const keys = ['k1', 'k2', 'k3'].map((k) => join(net.dir, k));
      for (const k of keys) await bnl('keygen', '--out', k);
      const alphaList = join(net.nodeDir('alpha'), 'bnl');
      const snapshot = (name: string): string => {
        const f = join(dir, name);
        copyFileSync(net.masterList, f);
        return f;
      };
      /** Serials of the three nodes. */
      const serials = (): Promise<number[]> => Promise.all(running().map(serialOf));

      // serial 2: the network's key hands over to k1, k2, k3 with threshold 2
      await bnl('--file', net.masterList, 'sign', '--key', net.signingKey, '--signers', ...keys.map((k) => `${k}.pub`), '--threshold', '2');
      assert.equal(parseBnl(readFileSync(net.masterList)).bnl.serial, 2);
      copyFileSync(net.masterList, alphaList);
      assert.equal((await bnl('push', '-c', net.conf('alpha'))).code, 0);
      await allAt(2);
      const trust = JSON.parse(readFileSync(join(net.nodeDir('beta'), 'bnl.trust'), 'utf8')) as { keys: string[]; threshold: number };
      assert.equal(trust.threshold, 2, 'beta stored the rotated trust');
      assert.equal(trust.keys.length, 3);

      // serial 3 signed by k1 alone: 1 of 3 is not enough
      await bnl('--file', net.masterList, 'sign', '--key', `${keys[0]}.key`);
      const oneOfThree = snapshot('one-of-three');
      copyFileSync(oneOfThree, alphaList);
      const reload1 = await cluevpn('-c', net.conf('alpha'), 'reload');
      assert.equal(reload1.code, 1, `alpha refuses 1 of 3 from disk: ${reload1.stdout}${reload1.stderr}`);
      const pushed = await L.exec('h1', process.execPath, [GOSSIP_PUSH, net.nodeDir('alpha'), 'beta', L.hosts[1]!.ipv4, String(PORT), oneOfThree], { timeoutMs: 30_000 });
      const reply = JSON.parse(pushed.stdout.trim().split('\n')[0]!) as { status?: string; code?: string };
      assert.equal(reply.status, 'rejected', `beta refuses 1 of 3 over the wire: ${pushed.stdout}`);
      assert.equal(reply.code, 'ERR_BNL_UNTRUSTED');
      assert.deepEqual(await serials(), [2, 2, 2]);

      // the same list cosigned by k2: 2 of 3, taken by every node
      await bnl('--file', net.masterList, 'sign', '--key', `${keys[1]}.key`, '--cosign');
      assert.equal(parseBnl(readFileSync(net.masterList)).signatures.length, 2);
      copyFileSync(net.masterList, alphaList);
      assert.equal((await bnl('push', '-c', net.conf('alpha'))).code, 0);
      await allAt(3);

      // serial 4 signed by the old key only: refused now
      await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
      copyFileSync(snapshot('old-key'), alphaList);
      const reload2 = await cluevpn('-c', net.conf('alpha'), 'reload');
      assert.equal(reload2.code, 1, `alpha refuses the old key's list: ${reload2.stdout}${reload2.stderr}`);
      assert.deepEqual(await serials(), [3, 3, 3]);

      // beta, configured with the old key only, restarts on the rotated trust it stored
      const beta = nodes.get('beta')!;
      assert.equal((await beta.process.stop('SIGTERM', 10_000)).code, 0);
      const beta2 = await start('beta', 'h2');
      assert.equal(await serialOf(beta2), 3, 'beta restarted at serial 3 (trust from bnl.trust)');
      await pingsWithin('h3', inner4(2));
      st.diagnostic(`serials after the rotation: ${(await serials()).join(', ')}; gamma peers ${(await gamma.status()).peers.length}`);
    });
    await step('4. the spoof check: a member sending with another member\'s inner address is dropped and counted as spoofed', async (st) => {
      // A member's own daemon refuses to send from an address outside its
      // subnets ('bad-source'), so the misbehaving member is played by the
      // test: alpha is stopped and its stored session keys (state.db) seal
      // echo requests to beta from alpha's underlay address and data port,
      // in an epoch alpha never used. The same packets from alpha's own inner
      // address are the control: delivered, so the datagrams are right and
      // only the source decides.
      const alpha = nodes.get('alpha')!;
      const beta = nodes.get('beta')!;
      assert.equal((await alpha.process.stop('SIGTERM', 10_000)).code, 0);
      const store = StateStore.open(join(net.nodeDir('alpha'), 'state.db'), { readonly: true });
      const session = store.getSession('beta');
      store.close();
      assert.ok(session !== undefined, 'alpha stored its session with beta');
      const epoch = session.sendEpoch + 1000;
      const seal = (counter: number, inner: Buffer): Buffer => {
        const d = Buffer.alloc(HEADER_LEN + inner.length + TAG_LEN);
        encodeHeader(d, 0, MessageType.DATA, 0, session.remoteIndex, epoch, counter);
        const aad = d.subarray(0, HEADER_LEN);
        // (one overload per AEAD in the typings; both take the same options)
        const c = createCipheriv(session.cipher as 'aes-256-gcm', session.txKey, d.subarray(8, HEADER_LEN), { authTagLength: TAG_LEN });
        c.setAAD(aad);
        c.update(inner).copy(d, HEADER_LEN);
        c.final();
        c.getAuthTag().copy(d, HEADER_LEN + inner.length);
        return d;
      };
      const spoofs = 5;
      const echo = (src: string, seq: number): Buffer => icmp4Echo(src, inner4(2), 0x5eed, seq, Buffer.alloc(32, seq));
      const datagrams = [seal(0, echo(inner4(1), 0))];
      for (let k = 1; k <= spoofs; k++) datagrams.push(seal(k, echo(inner4(3), k)));
      datagrams.push(seal(spoofs + 1, echo(inner4(1), spoofs + 1)));
      const before = await beta.peer('alpha');
      const spoofed = (p: PeerStatus): number => p.drops.spoofed ?? 0;
      await sendDatagrams(L, 'h1', L.hosts[1]!.ipv4, PORT, datagrams, PORT);
      await waitFor(async () => {
        const p = await beta.peer('alpha');
        return spoofed(p) - spoofed(before) >= spoofs && p.rxPackets - before.rxPackets >= 2;
      }, { timeoutMs: SETTLE_MS, description: 'beta counts the spoofed packets and delivers the two from alpha\'s own address' });
      const after = await beta.peer('alpha');
      st.diagnostic(`beta's drops for alpha: ${JSON.stringify(after.drops)}; delivered ${after.rxPackets - before.rxPackets}`);
      assert.equal(spoofed(after) - spoofed(before), spoofs, 'each spoofed packet counted once, as spoofed');
      assert.equal(after.rxPackets - before.rxPackets, 2, 'the packets from alpha\'s own address were delivered, the others not');
      assert.equal(sum(after.drops) - sum(before.drops), spoofs, 'no other drop');
    });
  } finally {
    if (steps.failed) {
      for (const n of nodes.values()) {
        t.diagnostic(`--- ${n.name} log (tail), stderr: ${n.process.stderr().slice(-1000)}`);
        for (const line of n.log().split('\n').slice(-25)) t.diagnostic(line);
      }
    }
    for (const n of nodes.values()) if (n.process.running()) await n.process.stop('SIGKILL', 1000);
    if (lab !== null) await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(listNamespaces(prefix), [], 'no namespace left behind');
});
