/**
 * End to end: the real `cluevpnd` as a mesh (issue 5 §3). One network made
 * from nothing by `examples/make-network` (CA, pinned certificates, signing
 * key, signed BNL, pull interval 2 s) and one lab of six namespaces are
 * shared by the steps, which run in order and build on each other:
 *
 *  1. four nodes from scratch: every directed pair pings (IPv4 and IPv6 inner)
 *  2. a fifth node: `cluevpn cert issue`, `bnl add` / `bnl sign`, `bnl push`
 *     on one node — every node holds the new serial and pings it
 *  3. a sixth node without any push: the new list only on one node's disk
 *     (restarted), the others get it by pulling
 *  4. a node removed and pushed: nobody exchanges traffic with
 *     it; with its keys gone it cannot negotiate (refused by everyone)
 *  5. bad lists (unknown key, older, garbage): refused when loaded by a
 *     member (`cluevpn reload`) and when pushed by a member over the
 *     mutual-TLS channel (test/fixtures/gossip-push); no node's list changes
 *  6. SIGKILL and restart: peers resume without renegotiating (restored
 *     sessions, negotiation counters unchanged), datagrams captured on the
 *     underlay before the kill are dropped when replayed, in both directions
 *  7. graceful stop of every daemon; the state stores hold sessions for the
 *     members only (the revoked node's keys were deleted)
 *
 * A node with an invalid config refusing to start (naming the line) is
 * covered by test/daemon.e2e.test.ts. Nothing is left behind: namespaces,
 * daemons, tcpdump (the devices live in the namespaces).
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and tcpdump; skips otherwise.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createUnsignedBnl, generateSigningKey, parseBnl, parsePrivateKey, signBnl } from '@cluevpn/bnl';
import { StateStore } from '@cluevpn/negotiation';
import {
  bnl,
  certPin,
  cluevpn,
  makeNetwork,
  pingFrom,
  sendDatagrams,
  startNode,
  udpDatagramsFromPcap,
  type Network,
  type RunningNode,
  type StatusReport,
} from './lib/cluevpn.js';
import { createLab, everyRequestAnswered, listNamespaces, requireLab, type Lab, type LabHost } from './lib/lab.js';
import type { TrackedProcess } from './lib/process.js';
import { createSteps } from './lib/steps.js';
import { waitFor } from './lib/wait-for.js';

const here = dirname(fileURLToPath(import.meta.url));
const GOSSIP_PUSH = join(here, 'fixtures', 'gossip-push.js');
const PORT = 3406;
/** Pull interval of every node (make-network `--pull-interval`), and its jitter (mesh.ts: ±25 %). */
const PULL_MS = 2000;
const PULL_JITTER = 0.25;
/**
 * Deadline for convergence (push, pull, revocation). Generous: it only
 * catches a hang, because a busy machine runs the mesh several times slower
 * (issue 16); the time each step measured is printed as a diagnostic (about
 * 1-3 s on an idle machine).
 */
const SETTLE_MS = 30_000;

/** Nodes in make-network order: node i is lab host hi, inner 10.99.0.i and fd99::i. */
const FIRST = ['alpha', 'beta', 'gamma', 'delta'] as const;
const inner4 = (i: number): string => `10.99.0.${i}`;
const inner6 = (i: number): string => `fd99::${i.toString(16)}`;

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

test('a mesh of real cluevpnd nodes: join by push and by pull, revoke, bad lists, SIGKILL restart', { timeout: 300_000 }, async (t) => {
  if (!requireLab(t, { tools: { tcpdump: 'tcpdump' } })) return;
  const dir = mkdtempSync(join(tmpdir(), 'mesh-e2e-'));
  let lab: Lab | null = null;
  let prefix = '';
  const nodes = new Map<string, RunningNode>();
  const allProcs: TrackedProcess[] = [];
  // the steps build on each other: after a failure the later ones are skipped, and the logs are printed at the end
  const steps = createSteps(t);
  const step = steps.step;
  try {
    lab = await createLab({ hosts: 6 });
    prefix = lab.prefix;
    const L = lab;
    const H = (i: number): LabHost => L.hosts[i - 1];
    /** Index (1-based, = host and inner address) of each node. */
    const idx = new Map<string, number>();
    const start = async (name: string): Promise<RunningNode> => {
      const n = await startNode(L, H(idx.get(name)!), net.nodeDir(name));
      nodes.set(name, n);
      allProcs.push(n.process);
      return n;
    };
    const running = (): RunningNode[] => [...nodes.values()].filter((n) => n.process.running());
    const serialOf = async (n: RunningNode): Promise<number> => (await n.status()).bnl.serial;
    /** Waits until lab host `from` gets an echo reply from `target` (single pings). */
    const pingsWithin = (from: string, target: string, timeoutMs: number): Promise<boolean> =>
      waitFor(async () => (await pingFrom(L, H(idx.get(from)!), target, 1, 1)).received === 1, { timeoutMs, intervalMs: 0, description: `${from} → ${target} ping` });

    FIRST.forEach((n, i) => idx.set(n, i + 1));
    const net: Network = await makeNetwork(join(dir, 'net'), {
      net: 'mesh',
      pullInterval: `${PULL_MS / 1000}s`,
      nodes: FIRST.map((n) => [n, H(idx.get(n)!).ipv4] as const),
    });
    /** Adds a node to the master list (`cluevpn cert issue`, `bnl add`, `bnl sign`) and lays out its directory. */
    const addNodeToMaster = async (name: string, i: number): Promise<void> => {
      idx.set(name, i);
      const nd = net.nodeDir(name);
      const issued = await cluevpn('cert', 'issue', name, '--ca', join(net.dir, 'ca'), '--out', nd);
      assert.equal(issued.code, 0, issued.stderr);
      const pin = await certPin(join(nd, `${name}.crt`));
      await bnl('--file', net.masterList, 'add', name, `ipv4=${H(i).ipv4}`, `port=${PORT}`, `subnet=${inner4(i)}/32`, `subnet=${inner6(i)}/128`, `fingerprint=${pin}`);
      await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
      copyFileSync(net.masterList, join(nd, 'bnl'));
      copyFileSync(join(net.dir, 'bnl-signing.pub'), join(nd, 'bnl-signing.pub'));
      const conf = readFileSync(net.conf('alpha'), 'utf8')
        .replace(/^name=.*$/m, `name=${name}`)
        .replace(/^cert=.*$/m, `cert=${name}.crt`)
        .replace(/^privkey=.*$/m, `privkey=${name}.key`);
      writeFileSync(net.conf(name), conf);
    };
    const masterSerial = (): number => parseBnl(readFileSync(net.masterList)).bnl.serial;
    const lists: Record<string, Buffer> = {};

    await step('1. four nodes from scratch: every directed pair pings over IPv4 and IPv6', async () => {
      await Promise.all(FIRST.map((n) => start(n)));
      await Promise.all(
        FIRST.map(async (a) => {
          for (const b of FIRST) {
            if (a === b) continue;
            for (const target of [inner4(idx.get(b)!), inner6(idx.get(b)!)]) await pingsWithin(a, target, 10_000);
          }
        }),
      );
      // the CLI's view: every node keyed with every other, serial 1 everywhere
      for (const a of FIRST) {
        const r = await cluevpn('-c', net.conf(a), 'status', '--json');
        assert.equal(r.code, 0, r.stderr);
        const st = JSON.parse(r.stdout) as StatusReport;
        assert.equal(st.bnl.serial, 1, a);
        // started as an operator starts it (bin/cluevpnd run directly): from the current bundle, with its code cache
        assert.equal(st.loaded, 'bundle (code cache accepted)', a);
        assert.deepEqual(st.peers.map((p) => p.name).sort(), FIRST.filter((n) => n !== a).sort(), a);
        for (const p of st.peers) {
          assert.notEqual(p.cipher, null, `${a}: session with ${p.name}`);
          assert.ok(p.rxPackets >= 2 && p.txPackets >= 2, `${a}: traffic with ${p.name}: rx ${p.rxPackets} tx ${p.txPackets}`);
        }
      }
    });

    await step('2. a fifth node by bnl push: every node holds the new serial and pings it', async () => {
      await addNodeToMaster('epsilon', 5);
      const serial = masterSerial();
      assert.equal(serial, 2);
      lists.serial2 = readFileSync(net.masterList);
      copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
      const t0 = Date.now();
      const pushed = await bnl('push', '-c', net.conf('alpha'));
      assert.equal(pushed.code, 0);
      const eps = await start('epsilon');
      const deadline = t0 + SETTLE_MS;
      const left = (): number => Math.max(1, deadline - Date.now());
      await Promise.all(running().map((n) => waitFor(async () => (await serialOf(n)) === serial, { timeoutMs: left(), intervalMs: 100, description: `${n.name} at serial ${serial}` })));
      await Promise.all(FIRST.map((a) => pingsWithin(a, inner4(5), left())));
      const elapsed = Date.now() - t0;
      t.diagnostic(`step 2: push to serial ${serial} everywhere and pings to the new node after ${elapsed} ms (new daemon started in between)`);
      // IPv6 too, and the new node sees every peer keyed
      for (const a of FIRST) await pingsWithin(a, inner6(5), SETTLE_MS);
      const st = await eps.status();
      assert.deepEqual(st.peers.map((p) => p.name).sort(), [...FIRST].sort());
      for (const a of FIRST) assert.notEqual((await eps.peer(a)).cipher, null, `epsilon keyed with ${a}`);
      // the convergence view: the pushing node learns that every peer holds the serial (pushes, then pulls)
      await waitFor(async () => Object.values((await nodes.get('alpha')!.status()).bnl.peers).every((v) => v === serial), {
        timeoutMs: SETTLE_MS,
        description: 'alpha sees every peer at the new serial',
      });
    });

    await step('3. a sixth node only by pulling: the others get the list', async () => {
      await addNodeToMaster('zeta', 6);
      const serial = masterSerial();
      assert.equal(serial, 3);
      // The new list reaches beta's disk while beta is stopped; beta loads it
      // at start and pushes nothing (a reload would push).
      const beta = nodes.get('beta')!;
      const stopped = await beta.process.stop('SIGTERM', 3000);
      assert.equal(stopped.code, 0, `beta stopped: ${beta.process.stderr()}`);
      copyFileSync(net.masterList, join(net.nodeDir('beta'), 'bnl'));
      const [beta2, zeta] = await Promise.all([start('beta'), start('zeta')]);
      // each stored session is installed once its peer granted a send epoch (one control-channel exchange)
      await waitFor(async () => (await beta2.status()).peers.filter((x) => x.name !== 'zeta').every((p) => p.restored), { timeoutMs: 10_000, description: 'beta resumed its stored sessions' });
      for (const p of (await beta2.status()).peers.filter((x) => x.name !== 'zeta')) {
        assert.equal(p.restored, true, `beta restored its session with ${p.name} after a graceful restart`);
        assert.equal(p.negotiations, 0, `beta negotiated nothing with ${p.name}`);
      }
      const t0 = Date.now();
      const within = SETTLE_MS;
      await Promise.all(
        running().map((n) => waitFor(async () => (await serialOf(n)) === serial, { timeoutMs: within, intervalMs: 100, description: `${n.name} at serial ${serial} by pulling` })),
      );
      t.diagnostic(`step 3: serial ${serial} on every node ${Date.now() - t0} ms after the carrier answered (pull interval ${PULL_MS} ms ±${PULL_JITTER * 100} %)`);
      for (const a of ['alpha', 'beta', 'gamma', 'delta', 'epsilon']) await pingsWithin(a, inner4(6), SETTLE_MS);
      await pingsWithin('zeta', inner6(1), SETTLE_MS);
      assert.equal((await zeta.status()).peers.length, 5);
    });

    await step('4. a node removed and pushed: nobody exchanges traffic with it, and it cannot negotiate', async () => {
      await bnl('--file', net.masterList, 'remove', 'delta');
      await bnl('--file', net.masterList, 'sign', '--key', net.signingKey);
      const serial = masterSerial();
      assert.equal(serial, 4);
      copyFileSync(net.masterList, join(net.nodeDir('alpha'), 'bnl'));
      const delta = nodes.get('delta')!;
      const members = running().filter((n) => n !== delta);
      // The control channel logs refused connections with their reason and endpoint: the first
      // per source and reason each minute, the repeats summed up in one line (issue 15 §4).
      const refusedLines = (n: RunningNode): number => n.log().split('\n').filter((l) => l.includes(' reason=not-member ') && l.includes(` endpoint=${H(4).ipv4} `)).length;
      const refusedBefore = members.map(refusedLines);
      const t0 = Date.now();
      assert.equal((await bnl('push', '-c', net.conf('alpha'))).code, 0);
      await Promise.all(
        members.map((n) =>
          waitFor(async () => {
            const st = await n.status();
            return st.bnl.serial === serial && !st.peers.some((p) => p.name === 'delta');
          }, { timeoutMs: Math.max(1, t0 + SETTLE_MS - Date.now()), intervalMs: 100, description: `${n.name} at serial ${serial} without delta` }),
        ),
      );
      t.diagnostic(`step 4: delta gone from every member ${Date.now() - t0} ms after the push`);
      // delta still holds the old list and its keys: it sends, nothing comes back
      assert.equal((await delta.status()).bnl.serial, 3, 'delta is not told the list that removes it');
      const before = await delta.status();
      const dropsBefore = await Promise.all(members.map(async (n) => sum((await n.status()).drops)));
      await Promise.all(
        members.map(async (m) => {
          const i = idx.get(m.name)!;
          const [out, back] = await Promise.all([pingFrom(L, H(4), inner4(i), 2, 1), pingFrom(L, H(i), inner4(4), 2, 1)]);
          assert.equal(out.received, 0, `delta → ${m.name}: ${out.received} replies`);
          assert.equal(back.received, 0, `${m.name} → delta: ${back.received} replies`);
        }),
      );
      const after = await delta.status();
      for (const p of after.peers) {
        const b = before.peers.find((x) => x.name === p.name)!;
        assert.equal(p.rxPackets, b.rxPackets, `delta received nothing from ${p.name}`);
        assert.ok(p.txPackets > b.txPackets, `delta did send to ${p.name}`);
      }
      const dropsAfter = await Promise.all(members.map(async (n) => sum((await n.status()).drops)));
      for (let k = 0; k < members.length; k++) {
        assert.ok(dropsAfter[k] > dropsBefore[k], `${members[k].name} dropped delta's packets (${dropsBefore[k]} → ${dropsAfter[k]})`);
      }

      // Without its stored keys, delta must negotiate afresh: every member refuses it.
      assert.equal((await delta.process.stop('SIGTERM', 3000)).code, 0);
      for (const f of ['state.db', 'state.db-wal', 'state.db-shm']) rmSync(join(net.nodeDir('delta'), f), { force: true });
      const delta2 = await start('delta');
      await Promise.all(
        members.map(async (m) => {
          const out = await pingFrom(L, H(4), inner4(idx.get(m.name)!), 2, 1);
          assert.equal(out.received, 0, `restarted delta → ${m.name}`);
        }),
      );
      await waitFor(() => members.every((m, k) => refusedLines(m) > refusedBefore[k]), { timeoutMs: 10_000, description: 'every member logged refusing delta (not-member) since its removal' });
      const st = await delta2.status();
      for (const p of st.peers) {
        assert.equal(p.cipher, null, `delta has no session with ${p.name}`);
        assert.equal(p.negotiations, 0, `delta negotiated nothing with ${p.name}`);
      }
      assert.equal((await delta2.process.stop('SIGTERM', 3000)).code, 0);
      // its certificate opens no control channel at all, whatever it would send
      const push = await L.exec(H(4), process.execPath, [GOSSIP_PUSH, net.nodeDir('delta'), 'alpha', H(1).ipv4, String(PORT), join(net.nodeDir('delta'), 'bnl')], { check: false, timeoutMs: 20_000 });
      // (TLS 1.3: the client may finish its handshake before the server checks
      // the client certificate; then the server closes before any request)
      const answers = push.stdout.trim() === '' ? [] : push.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status?: string; code?: string });
      assert.ok(push.code === 1 || (push.code === 0 && answers.length === 1 && answers[0]!.code === 'ERR_CHANNEL_CLOSED'), `delta's channel to alpha refused: ${push.stdout}${push.stderr}`);
      assert.ok(answers.every((a) => a.status === undefined), 'no request got an answer');
    });

    await step('5. bad lists (unknown key, older, garbage) are refused, from disk and over the wire; no list changes', async (st) => {
      const serial = masterSerial();
      const current = parseBnl(readFileSync(net.masterList));
      const stranger = generateSigningKey();
      const signingKey = parsePrivateKey(readFileSync(net.signingKey, 'utf8'));
      const bad: Record<string, Buffer> = {
        // a newer serial, signed by a key nobody trusts
        'unknown-key': Buffer.from(signBnl(createUnsignedBnl({ ...current.bnl, serial: serial + 10, timestamp: Date.now() }), [parsePrivateKey(stranger.privateKeyPem)]).bytes),
        // validly signed by the network's key, never seen, but older than the current list
        older: Buffer.from(signBnl(createUnsignedBnl({ ...current.bnl, serial: serial - 1, timestamp: Date.now() }), [signingKey]).bytes),
        // an old list every node held once (serial 2)
        'older-seen': lists.serial2!,
        garbage: Buffer.concat([Buffer.from('cluevpn-bnl 1\n{not json\n'), Buffer.alloc(64, 0xa5)]),
      };
      const files: Record<string, string> = {};
      for (const [what, bytes] of Object.entries(bad)) writeFileSync((files[what] = join(dir, `bad-${what}`)), bytes);
      const members = running();
      const serials = async (): Promise<number[]> => Promise.all(members.map(serialOf));
      assert.deepEqual(await serials(), members.map(() => serial));

      // a member loading them from disk refuses each (and pushes nothing)
      const alphaList = join(net.nodeDir('alpha'), 'bnl');
      for (const [what, file] of Object.entries(files)) {
        copyFileSync(file, alphaList);
        const r = await cluevpn('-c', net.conf('alpha'), 'reload');
        if (what.startsWith('older')) assert.equal(r.code, 0, `${what}: reload answers "not newer": ${r.stderr}`);
        else assert.equal(r.code, 1, `${what}: reload refused: ${r.stdout}${r.stderr}`);
        assert.equal(await serialOf(nodes.get('alpha')!), serial, what);
      }
      copyFileSync(net.masterList, alphaList);

      // a member pushing them over the mutual-TLS channel: each target refuses each
      const alpha = nodes.get('alpha')!;
      for (const target of members.filter((n) => n !== alpha)) {
        const i = idx.get(target.name)!;
        const order = ['unknown-key', 'older', 'older-seen', 'garbage'];
        const r = await L.exec(H(1), process.execPath, [GOSSIP_PUSH, net.nodeDir('alpha'), target.name, H(i).ipv4, String(PORT), ...order.map((w) => files[w]!)], { timeoutMs: 20_000 });
        const replies = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; status?: string; code?: string; error?: string });
        assert.equal(replies.length, order.length, r.stdout);
        const by = Object.fromEntries(order.map((w, k) => [w, replies[k]!]));
        for (const w of ['unknown-key', 'older', 'garbage']) {
          assert.equal(by[w]!.status, 'rejected', `${target.name} ${w}: ${JSON.stringify(by[w])}`);
          assert.match(by[w]!.code ?? '', /^ERR_BNL_/, `${target.name} ${w}: a BNL refusal code`);
        }
        assert.equal(by.older!.code, 'ERR_BNL_STALE', 'the older list is refused as stale');
        // a list seen before is answered from the dedupe set without being offered again
        assert.ok(by['older-seen']!.status === 'duplicate' || by['older-seen']!.code === 'ERR_BNL_STALE', `${target.name} older-seen: ${JSON.stringify(by['older-seen'])}`);
        st.diagnostic(`${target.name} refused: ${replies.map((x) => x.code).join(', ')}`);
      }
      // nothing changed, also after a pull round
      await sleep(PULL_MS * (1 + PULL_JITTER));
      assert.deepEqual(await serials(), members.map(() => serial));
      for (const n of members) assert.equal((await n.status()).bnl.nodes, current.bnl.nodes.length, n.name);
    });

    await step('6. SIGKILL and restart: peers resume without renegotiating; no pre-restart datagram is accepted again', async () => {
      const gamma = nodes.get('gamma')!;
      const beta = nodes.get('beta')!;
      const g = H(3);
      const b = H(2);
      const peersOfGamma = running().filter((n) => n !== gamma);
      // capture gamma ↔ beta on gamma's underlay while they exchange pings
      const pcap = join(dir, 'gamma.pcap');
      const dump = L.spawn(g, 'tcpdump', ['-i', 'any', '--immediate-mode', '-U', '-n', '-Z', 'root', '-w', pcap, 'udp', 'and', 'port', String(PORT), 'and', 'host', b.ipv4], { label: 'tcpdump gamma' });
      allProcs.push(dump);
      await dump.waitForOutput(/listening on/, { timeoutMs: 10_000, stream: 'stderr' });
      const warm = await L.ping(g, inner4(2), { count: 5, intervalS: 0.2, deadlineS: 30 });
      assert.ok(everyRequestAnswered(warm, 5), `gamma → beta: replies ${warm.repliedSeqs.join(',')}`);
      await sleep(300);
      await dump.stop('SIGINT');
      // byte 0 = version 1 << 4 | type 1 (data), see ARCHITECTURE.md
      const isData = (d: { payload: Buffer }): boolean => d.payload.length > 36 && d.payload[0] === 0x11;
      const captured = udpDatagramsFromPcap(pcap).filter(isData);
      const toGamma = captured.filter((d) => d.src === b.ipv4 && d.dst === g.ipv4).map((d) => d.payload);
      const toBeta = captured.filter((d) => d.src === g.ipv4 && d.dst === b.ipv4).map((d) => d.payload);
      assert.ok(toGamma.length >= 5 && toBeta.length >= 5, `captured ${toGamma.length} beta→gamma and ${toBeta.length} gamma→beta data datagrams`);

      const negBefore = new Map<string, number>();
      for (const n of peersOfGamma) negBefore.set(n.name, (await n.peer('gamma')).negotiations);

      const killed = await gamma.process.stop('SIGKILL', 1000);
      assert.equal(killed.signal, 'SIGKILL');
      const gamma2 = await start('gamma');
      // a stored session is installed once its peer granted a send epoch (one control-channel exchange)
      await waitFor(async () => (await gamma2.status()).peers.every((p) => p.restored), { timeoutMs: 10_000, description: 'gamma resumed every stored session' });
      let st = await gamma2.status();
      for (const p of st.peers) {
        assert.equal(p.restored, true, `gamma restored its session with ${p.name}`);
        assert.equal(p.negotiations, 0, `gamma negotiated nothing with ${p.name}`);
        assert.notEqual(p.cipher, null, `gamma keyed with ${p.name}`);
      }

      /** Replays the captured datagrams to gamma and to beta: each is dropped and counted, none delivered. */
      const stale = (p: { drops: Record<string, number> }): number => (p.drops['old-epoch'] ?? 0) + (p.drops.replayed ?? 0);
      const replay = async (when: string): Promise<void> => {
        const gBefore = await gamma2.peer('beta');
        const bBefore = await beta.peer('gamma');
        await sendDatagrams(L, b, g.ipv4, PORT, toGamma);
        await sendDatagrams(L, g, b.ipv4, PORT, toBeta);
        await waitFor(async () => stale(await gamma2.peer('beta')) - stale(gBefore) >= toGamma.length && stale(await beta.peer('gamma')) - stale(bBefore) >= toBeta.length, {
          timeoutMs: SETTLE_MS,
          description: `replays ${when} counted as old-epoch/replayed`,
        });
        const gAfter = await gamma2.peer('beta');
        const bAfter = await beta.peer('gamma');
        assert.equal(stale(gAfter) - stale(gBefore), toGamma.length, `${when}, gamma: ${JSON.stringify(gAfter.drops)}`);
        assert.equal(stale(bAfter) - stale(bBefore), toBeta.length, `${when}, beta: ${JSON.stringify(bAfter.drops)}`);
        assert.equal(gAfter.rxPackets, gBefore.rxPackets, `${when}: no replayed datagram delivered on gamma`);
        assert.equal(bAfter.rxPackets, bBefore.rxPackets, `${when}: no replayed datagram delivered on beta`);
        t.diagnostic(`step 6, ${when}: replayed ${toGamma.length} datagrams to gamma (drops ${JSON.stringify(gAfter.drops)}), ${toBeta.length} to beta (drops ${JSON.stringify(bAfter.drops)})`);
      };
      // at once: gamma's floors are at the epochs its peers moved to; beta still holds gamma's old window
      await replay('right after the restart');

      // traffic resumes both ways with every peer; the peers speak first (with the
      // epochs gamma granted them when it resumed)
      await Promise.all(peersOfGamma.map((n) => pingsWithin(n.name, inner6(3), 10_000)));
      await Promise.all(peersOfGamma.map((n) => pingsWithin('gamma', inner4(idx.get(n.name)!), 10_000)));
      st = await gamma2.status();
      for (const p of st.peers) {
        assert.equal(p.negotiations, 0, `gamma still negotiated nothing with ${p.name}`);
        assert.equal(p.restored, true, `gamma still on its restored session with ${p.name}`);
        assert.ok(p.rxPackets > 0, `gamma received from ${p.name}`);
      }
      for (const n of peersOfGamma) assert.equal((await n.peer('gamma')).negotiations, negBefore.get(n.name), `${n.name} did not renegotiate with gamma`);

      // again once both sides moved to new epochs
      await replay('after traffic resumed');
      assert.equal((await gamma2.status()).peers.every((p) => p.negotiations === 0), true, 'the replays caused no renegotiation on gamma');
      assert.equal((await beta.peer('gamma')).negotiations, negBefore.get('beta'), 'the replays caused no renegotiation on beta');
    });

    await step('7. every daemon stops cleanly; the keys of the revoked node are gone from every state store', async () => {
      const members = running();
      for (const n of members) {
        const r = await n.process.stop('SIGTERM', 3000);
        assert.equal(r.code, 0, `${n.name}: ${n.process.stderr()}`);
      }
      for (const n of members) {
        const store = StateStore.open(join(net.nodeDir(n.name), 'state.db'), { readonly: true });
        try {
          const peers = store.listSessions().map((x) => x.peer).sort();
          assert.deepEqual(peers, members.filter((m) => m !== n).map((m) => m.name).sort(), `${n.name}: stored sessions`);
        } finally {
          store.close();
        }
      }
    });
  } finally {
    if (steps.failed) {
      for (const n of nodes.values()) {
        t.diagnostic(`--- ${n.name} log (tail), stderr: ${n.process.stderr().slice(-1000)}`);
        for (const line of n.log().split('\n').slice(-25)) t.diagnostic(line);
      }
    }
    for (const p of allProcs) if (p.running()) await p.stop('SIGKILL', 1000);
    if (lab !== null) await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(listNamespaces(prefix), [], 'no namespace left behind');
  // the devices lived in the namespaces; none was ever made in ours
  assert.notEqual(spawnSync('ip', ['link', 'show', 'dev', 'mesh'], { stdio: 'ignore' }).status, 0, 'no device "mesh" in the root namespace');
  for (const p of allProcs) assert.equal(p.running(), false, `${p.label} still running`);
});
