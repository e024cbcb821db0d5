/**
 * Switch mode: the MAC table's rules (explicit clock) and three data planes
 * on memory TAP devices joined by the in-memory UDP network: flooding,
 * learning, unicast to the owner only, no frame ever re-sent to peers, the
 * MAC spoof check, moves, BNL-fixed MACs, and mixed modes refusing each
 * other's data messages.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryTun, type MemoryTun } from '@cluevpn/tun/testing';
import { jsCryptoBackend } from '../src/backend-js.js';
import { createDataplane, type Dataplane } from '../src/dataplane.js';
import { MessageType } from '../src/framing.js';
import { MAC_LOCAL, MAC_UNKNOWN, MacTable, MacVerdict, formatMac, parseMac, readMac } from '../src/mac-table.js';
import type { MacTableOptions } from '../src/mac-table.js';
import { createMemoryUdpNetwork, type MemoryUdpNetwork } from '../src/testing.js';
import { ipv4Packet, sessionPair, waitFor } from './pipeline-helpers.js';

const A1 = '02:00:00:00:0a:01';
const B1 = '02:00:00:00:0b:01';
const C1 = '02:00:00:00:0c:01';
const BCAST = 'ff:ff:ff:ff:ff:ff';

function mac(text: string): Buffer {
  return Buffer.from(text.replace(/:/g, ''), 'hex');
}

/** An Ethernet frame dst ← src carrying `payload` bytes (EtherType 0x88b5, local experimental). */
function frame(dst: string, src: string, payload = 46, fill = 0x5a): Buffer {
  const f = Buffer.alloc(14 + payload, fill);
  mac(dst).copy(f, 0);
  mac(src).copy(f, 6);
  f.writeUInt16BE(0x88b5, 12);
  return f;
}

describe('MacTable', () => {
  const opts: Partial<MacTableOptions> = { ageMs: 10_000, moveAfterMs: 500, maxEntries: 8, maxPerOwner: 4 };
  const m = (t: string): number => parseMac(t);

  it('reads, parses and formats MACs alike', () => {
    assert.equal(readMac(mac('fe:dc:ba:98:76:54'), 0), 0xfedcba987654);
    assert.equal(parseMac('fe:dc:ba:98:76:54'), 0xfedcba987654);
    assert.equal(formatMac(0x0200000000a1), '02:00:00:00:00:a1');
    assert.throws(() => parseMac('FE:DC:BA:98:76:54'));
    assert.throws(() => parseMac('fe-dc-ba-98-76-54'));
  });

  it('learns first seen; refuses another peer while the owner uses the MAC; moves after the owner fell silent', () => {
    const t = new MacTable(opts);
    assert.equal(t.admit(m(A1), 1, 0), MacVerdict.ACCEPT);
    assert.equal(t.lookup(m(A1), 1), 1);
    assert.equal(t.admit(m(A1), 2, 100), MacVerdict.SPOOFED, 'peer 2 claims a MAC peer 1 used 100 ms ago');
    assert.equal(t.admit(m(A1), 1, 400), MacVerdict.ACCEPT, 'refresh');
    assert.equal(t.admit(m(A1), 2, 899), MacVerdict.SPOOFED, 'silent for 499 ms only');
    assert.equal(t.admit(m(A1), 2, 900), MacVerdict.ACCEPT, 'silent for 500 ms: moved');
    assert.equal(t.lookup(m(A1), 900), 2);
    assert.equal(t.moved, 1);
    assert.equal(t.admit(m(A1), 1, 950), MacVerdict.SPOOFED, 'the old owner is now the one refused');
  });

  it('our own side takes a learned MAC at once; a peer takes ours only after it was silent here', () => {
    const t = new MacTable(opts);
    t.admit(m(A1), 1, 0);
    assert.equal(t.admitLocal(m(A1), 10), MacVerdict.ACCEPT);
    assert.equal(t.lookup(m(A1), 10), MAC_LOCAL);
    assert.equal(t.admit(m(A1), 1, 20), MacVerdict.SPOOFED);
    assert.equal(t.admit(m(A1), 1, 510), MacVerdict.ACCEPT);
    assert.equal(t.lookup(m(A1), 510), 1);
  });

  it('fixed MACs never move or age; our side may not send one fixed for another node', () => {
    const t = new MacTable(opts);
    t.setFixed(1, [m(A1)]);
    assert.equal(t.admit(m(A1), 2, 1_000_000), MacVerdict.SPOOFED);
    assert.equal(t.admitLocal(m(A1), 1_000_000), MacVerdict.FOREIGN);
    assert.equal(t.admit(m(A1), 1, 1_000_000), MacVerdict.ACCEPT);
    assert.equal(t.lookup(m(A1), 9_000_000), 1);
    // a newer list moves A1 from owner 1 to owner 2: owner 2 is updated first
    t.setFixed(2, [m(A1)]);
    assert.equal(t.lookup(m(A1), 0), 2, 'the newer fixing wins');
    t.setFixed(1, []);
    assert.equal(t.lookup(m(A1), 0), 2, "owner 1's update does not take it back");
    t.setFixed(2, []);
    assert.equal(t.lookup(m(A1), 0), MAC_UNKNOWN, 'a list without it frees it');
  });

  it('learned entries age out; shares are bounded per owner and in all', () => {
    const t = new MacTable(opts);
    t.admit(m(A1), 1, 0);
    assert.equal(t.lookup(m(A1), 9_999), 1);
    assert.equal(t.lookup(m(A1), 10_000), MAC_UNKNOWN, 'aged out after ageMs');
    const t2 = new MacTable(opts);
    for (let i = 0; i < 4; i++) assert.equal(t2.admit(0x020000000100 + i, 1, 0), MacVerdict.ACCEPT);
    assert.equal(t2.admit(0x020000000200, 1, 0), MacVerdict.FULL, "peer 1's share is used up");
    for (let i = 0; i < 4; i++) assert.equal(t2.admit(0x020000000300 + i, 2, 0), MacVerdict.ACCEPT, 'another peer still learns');
    assert.equal(t2.admit(0x020000000400, 3, 0), MacVerdict.FULL, 'the table is full');
    assert.equal(t2.admit(0x020000000400, 3, 10_000), MacVerdict.ACCEPT, 'aged entries make room');
    t2.removeOwner(3);
    assert.equal(t2.lookup(0x020000000400, 10_000), MAC_UNKNOWN);
  });
});

interface Node {
  dp: Dataplane;
  tun: MemoryTun;
  id: string;
}

/** n switch-mode data planes (ids n1..), each a peer of every other with sessions, on one memory network. */
async function mesh(n: number, o: { macTable?: Partial<MacTableOptions>; modes?: Array<'router' | 'switch'>; fixed?: Record<string, string[]>; mtu?: number } = {}): Promise<{ nodes: Node[]; net: MemoryUdpNetwork; close(): void }> {
  const net = createMemoryUdpNetwork();
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const mode = o.modes?.[i] ?? 'switch';
    const tun = createMemoryTun({ mode: mode === 'switch' ? 'tap' : 'tun', mtu: 1400 });
    const dp = await createDataplane({ tun, port: 0, backends: { crypto: jsCryptoBackend(), udp: net, name: 'memory' }, mode, macTable: o.macTable, mtu: o.mtu });
    nodes.push({ dp, tun, id: `n${i + 1}` });
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const [x, y] = [nodes[i]!, nodes[j]!];
      x.dp.addPeer({ id: y.id, subnets: [`10.0.${j + 1}.0/24`], endpoint: { host: '127.0.0.1', port: y.dp.port }, macs: o.fixed?.[y.id] });
      y.dp.addPeer({ id: x.id, subnets: [`10.0.${i + 1}.0/24`], endpoint: { host: '127.0.0.1', port: x.dp.port }, macs: o.fixed?.[x.id] });
      const s = sessionPair();
      x.dp.installSession(y.id, s.a);
      y.dp.installSession(x.id, s.b);
    }
  }
  for (const x of nodes) if (o.fixed?.[x.id]) x.dp.setLocalMacs(o.fixed[x.id]!);
  return {
    nodes,
    net,
    close() {
      for (const x of nodes) {
        x.dp.close();
        x.tun.close();
      }
    },
  };
}

/** Injects frames into a node's TAP and waits until the memory network delivered everything. */
async function send(net: MemoryUdpNetwork, from: Node, frames: Buffer[]): Promise<void> {
  const before = net.sent.length;
  from.tun.inject(frames);
  from.tun.flush();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.ok(net.sent.length >= before, 'sent datagrams recorded');
}

function peerDrops(dp: Dataplane, peer: string): Partial<Record<string, number>> {
  return dp.stats().peers.find((p) => p.id === peer)!.drops;
}

describe('switch mode: three data planes on memory TAPs', () => {
  it('floods a broadcast to every peer, learns, then sends unicast to the owner only; never re-sends a peer frame to peers', async () => {
    const m = await mesh(3);
    const [n1, n2, n3] = m.nodes as [Node, Node, Node];
    try {
      const b = frame(BCAST, A1, 46, 1);
      await send(m.net, n1, [b]);
      assert.equal(m.net.sent.length, 2, 'one copy per peer, nothing else on the wire');
      const got2 = n2.tun.takeWritten();
      const got3 = n3.tun.takeWritten();
      assert.deepEqual(got2, [b], 'n2 delivered the broadcast to its TAP, byte for byte');
      assert.deepEqual(got3, [b]);
      assert.equal(n1.tun.takeWritten().length, 0);
      assert.equal(n1.dp.stats().switch!.flooded, 1);
      // the datagrams are FRAME messages
      for (const d of m.net.sent) assert.equal(d.data[0]! & 0x0f, MessageType.FRAME);
      // n2 learned A1 behind n1: a reply goes to n1 only
      m.net.sent.length = 0;
      const reply = frame(A1, B1, 100, 2);
      await send(m.net, n2, [reply]);
      assert.equal(m.net.sent.length, 1, 'unicast: one datagram');
      assert.equal(m.net.sent[0]!.port, n1.dp.port, 'to n1, the owner of A1');
      assert.deepEqual(n1.tun.takeWritten(), [reply]);
      assert.equal(n3.tun.takeWritten().length, 0, 'n3 saw nothing of the unicast');
      assert.equal(n2.dp.stats().switch!.unicast, 1);
      const st2 = n2.dp.stats().switch!;
      assert.deepEqual(st2.macs.map((e) => [e.mac, e.owner]).sort(), [[A1, 'n1'], [B1, 'local']]);
      // unknown unicast floods; a unicast to a MAC on our own side is filtered
      m.net.sent.length = 0;
      await send(m.net, n3, [frame(C1, '02:00:00:00:0c:02')]);
      assert.equal(m.net.sent.length, 2, 'unknown destination: flooded');
      await send(m.net, n3, [frame('02:00:00:00:0c:02', C1)]);
      assert.equal(n3.dp.stats().drops['local-mac'], 1);
      assert.equal(m.net.sent.length, 2, 'nothing sent for a local destination');
      // no loops: n1, n2, n3 only ever sent what their own TAPs gave them
      for (const d of m.net.sent) assert.equal(d.fromPort, n3.dp.port);
      n1.tun.takeWritten();
      n2.tun.takeWritten();
    } finally {
      m.close();
    }
  });

  it('drops a source MAC another peer is using (spoofed), accepts it after the owner fell silent (a move)', async () => {
    const strict = await mesh(3, { macTable: { moveAfterMs: 600_000 } });
    try {
      const [n1, n2, n3] = strict.nodes as [Node, Node, Node];
      await send(strict.net, n1, [frame(BCAST, A1)]);
      n2.tun.takeWritten();
      n3.tun.takeWritten();
      await send(strict.net, n2, [frame(BCAST, A1, 46, 7)]);
      assert.equal(peerDrops(n3.dp, 'n2').spoofed, 1, 'n3 refused A1 from n2: n1 owns it');
      assert.equal(peerDrops(n1.dp, 'n2').spoofed, 1, 'n1 refused A1 from n2: it is on its own side');
      assert.equal(n3.tun.takeWritten().length, 0);
      assert.equal(n1.tun.takeWritten().length, 0);
    } finally {
      strict.close();
    }
    const moving = await mesh(3, { macTable: { moveAfterMs: 20 } });
    try {
      const [n1, n2, n3] = moving.nodes as [Node, Node, Node];
      await send(moving.net, n1, [frame(BCAST, A1)]);
      n2.tun.takeWritten();
      n3.tun.takeWritten();
      const t0 = Date.now();
      await waitFor(() => Date.now() - t0 >= 40, 5000, '40 ms');
      await send(moving.net, n2, [frame(BCAST, A1, 46, 8)]);
      assert.equal(n3.tun.takeWritten().length, 1, 'n3 accepted A1 from n2 after n1 fell silent for it');
      assert.equal(n1.tun.takeWritten().length, 1, 'n1 too: A1 left its side');
      const e = n3.dp.stats().switch!.macs.find((x) => x.mac === A1)!;
      assert.equal(e.owner, 'n2');
      assert.equal(n3.dp.stats().switch!.moved, 1);
    } finally {
      moving.close();
    }
  });

  it('BNL-fixed MACs: never taken by another peer, never sent by another node', async () => {
    const m = await mesh(3, { macTable: { moveAfterMs: 0 }, fixed: { n1: [A1] } });
    try {
      const [n1, n2, n3] = m.nodes as [Node, Node, Node];
      // n2 never saw A1 used, yet cannot claim it: it is n1's in the list
      await send(m.net, n2, [frame(BCAST, A1)]);
      assert.equal(n2.dp.stats().drops['bad-source'], 1, 'n2 refuses to send a MAC fixed for n1');
      assert.equal(m.net.sent.length, 0);
      await send(m.net, n1, [frame(BCAST, A1)]);
      assert.equal(n3.tun.takeWritten().length, 1, 'from n1 it passes');
      assert.equal(n3.dp.stats().switch!.macs.find((x) => x.mac === A1)!.fixed, true);
    } finally {
      m.close();
    }
  });

  it('a frame from a peer with a source MAC fixed for another node is counted as spoofed on that peer', async () => {
    // n2's list fixes B1 to n2 itself; n1 (an older list, or a forger) sends B1 anyway
    const m = await mesh(2, { macTable: { moveAfterMs: 0 } });
    try {
      const [n1, n2] = m.nodes as [Node, Node];
      n2.dp.setLocalMacs([B1]);
      await send(m.net, n1, [frame(BCAST, B1, 46, 9), frame(BCAST, A1)]);
      assert.equal(peerDrops(n2.dp, 'n1').spoofed, 1, 'B1 is fixed for n2: n1 may not use it');
      assert.deepEqual(n2.tun.takeWritten(), [frame(BCAST, A1)], 'only the honest frame was delivered');
    } finally {
      m.close();
    }
  });

  it('checks frames: too short or a group source is not-ethernet, larger than mtu + 18 oversize', async () => {
    const m = await mesh(2, { mtu: 1300 }); // the data plane's MTU below the device's, to inject larger frames
    try {
      const [n1] = m.nodes as [Node, Node];
      await send(m.net, n1, [Buffer.alloc(13, 1), frame(BCAST, '03:00:00:00:00:01'), frame(BCAST, A1, 1300 + 18 - 14 + 1)]);
      const d = n1.dp.stats().drops;
      assert.equal(d['not-ethernet'], 2);
      assert.equal(d.oversize, 1);
      assert.equal(m.net.sent.length, 0);
      await send(m.net, n1, [frame(BCAST, A1, 1300 + 18 - 14)]);
      assert.equal(m.net.sent.length, 1, 'a frame of exactly mtu + 18 passes');
    } finally {
      m.close();
    }
  });

  it('a peer without a session is asked for one and the frame counted no-session', async () => {
    const net = createMemoryUdpNetwork();
    const tun = createMemoryTun({ mode: 'tap', mtu: 1400 });
    const asked: string[] = [];
    const dp = await createDataplane({ tun, port: 0, backends: { crypto: jsCryptoBackend(), udp: net, name: 'memory' }, mode: 'switch', events: { onNoSession: (id) => asked.push(id) } });
    try {
      dp.addPeer({ id: 'p', subnets: [], endpoint: { host: '127.0.0.1', port: 9 } });
      tun.inject([frame(BCAST, A1)]);
      tun.flush();
      assert.deepEqual(asked, ['p']);
      assert.equal(dp.stats().peers[0]!.drops['no-session'], 1);
    } finally {
      dp.close();
      tun.close();
    }
  });

  it('router and switch nodes refuse each other’s data messages as bad-type', async () => {
    const m = await mesh(2, { modes: ['router', 'switch'] });
    try {
      const [r, s] = m.nodes as [Node, Node];
      await send(m.net, r, [ipv4Packet('10.0.1.5', '10.0.2.9', 64)]);
      assert.equal(s.dp.stats().drops['bad-type'], 1, 'the switch node drops an IP DATA message');
      await send(m.net, s, [frame(BCAST, A1)]);
      assert.equal(r.dp.stats().drops['bad-type'], 1, 'the router node drops a FRAME message');
      assert.equal(r.tun.takeWritten().length, 0);
      assert.equal(s.tun.takeWritten().length, 0);
    } finally {
      m.close();
    }
  });

  it("refuses switch mode on a TUN, and bad MACs", async () => {
    const net = createMemoryUdpNetwork();
    const tun = createMemoryTun({ mode: 'tun', mtu: 1400 });
    await assert.rejects(createDataplane({ tun, port: 0, backends: { crypto: jsCryptoBackend(), udp: net, name: 'memory' }, mode: 'switch' }), { code: 'ERR_DP_CONFIG' });
    tun.close();
    const m = await mesh(2);
    try {
      assert.throws(() => m.nodes[0]!.dp.setLocalMacs(['02:00:00:00:00:0G']), { code: 'ERR_DP_CONFIG' });
      assert.throws(() => m.nodes[0]!.dp.addPeer({ id: 'x', subnets: [], macs: ['02:00:00:00:00:0A'] }), { code: 'ERR_DP_CONFIG' });
      assert.equal(m.nodes[0]!.dp.stats().peers.some((p) => p.id === 'x'), false, 'a refused peer is not added');
      assert.equal(m.nodes[0]!.dp.stats().mode, 'switch');
      assert.equal(m.nodes[0]!.dp.stats().express.on, false);
    } finally {
      m.close();
    }
  });
});
