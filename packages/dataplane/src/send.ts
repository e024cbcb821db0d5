/**
 * Send pipeline: IP packets read from the TUN device → encrypted datagrams.
 *
 * 1. TUN batch in (borrowed: valid until this handler returns).
 * 2. Parse the IP version and length; drop 'not-ip' / 'oversize'.
 * 3. Optional source check against the local subnets ('bad-source').
 * 4. Longest-prefix match of the destination to a peer; no match: drop
 *    'no-route' and queue an ICMP/ICMPv6 unreachable (rate-limited).
 * 5. Peer without a session: `onNoSession` (rate-limited) and keep a copy
 *    in the peer's hold queue (≤ `holdPackets`, ≤ `holdMs` old, ≤
 *    `holdPeers` peers at once), sent by `flushHeld` once a session is the
 *    peer's primary; a packet that finds no room, or expires or is
 *    forgotten while held, is dropped as 'no-session'. Without an endpoint:
 *    drop 'no-endpoint'.
 * 5b. Path MTU (pmtu.ts): a packet larger than the peer's inner path MTU is
 *    dropped as 'too-big' and answered with an ICMP "fragmentation needed"
 *    / ICMPv6 "packet too big" carrying that MTU (rate-limited, step 11);
 *    an IPv4 packet without DF is cut into fragments instead and those go
 *    through the pipeline. TCP SYNs get their MSS clamped to it
 *    (mss-clamp.ts, when `clampMss`).
 * 6. Take the session's counter; at `rejectAfterMessages` drop
 *    'counter-limit' and ask `onRekeyNeeded`; at `rekeyAfterMessages` ask
 *    once ('counter-soft-limit') and keep sending. With an access policy in
 *    force, the packet's flow is tracked (acl.ts) so that its replies pass
 *    the receiving check; nothing is dropped for the policy on send.
 * 7. Place the payload: in place in the TUN slot when its headroom and
 *    tailroom fit header and tag, else copied into the send arena.
 * 8. Compress (LZ4, per session) when it shrinks the packet; set the flag.
 * 9. Write the header in front of the payload.
 * 10. One `sealBatch` for the whole batch, one `sendBatch`; per-peer tx
 *     counters for what the socket took, 'send-failed' for the rest. A
 *     peer whose path goes through a relay (`Peer.relay`, set by the
 *     daemon's path selector through `Dataplane.setPath`): its sealed
 *     datagram, whole and unreadable to the relay, gets the peer's node id
 *     and a relay request header (type 4) of the relay's session in front,
 *     where it lies (every payload is placed with room for that), then a
 *     second `sealBatch` over those datagrams only *authenticates* them
 *     (`macOnly`: a MAC, nothing encrypted again), and they go to the relay
 *     in the same `sendBatch` (counted also as relayed tx). Keepalives
 *     follow the same path; `sendKeepalive(peer, true)` probes the direct one.
 * 11. One TUN `writeBatch` for the queued ICMP replies.
 * 12. Express lease: when a small read (≤ EXPRESS_MAX_BATCH packets: what
 *     idle traffic looks like) was sent whole, framed in place, and its last
 *     packet went uncompressed with the peer's primary session, that
 *     packet's (destination, source) pair is leased to the native socket
 *     with a block of {@link TX_LEASE_BLOCK} counters taken out of the
 *     session's counter for good: the packets of that pair in the next small
 *     reads are framed, sealed and sent in C straight from the TUN read, without
 *     entering JavaScript (native/src/express.c). Any change to peers,
 *     sessions, routes, endpoints, local subnets or send epochs voids every
 *     send lease (`PeerTable.expressTxGen`), and so does this pipeline
 *     sending on a session that may hold one, so that C's counters never
 *     fall behind what the peer's replay window still accepts.
 *
 * Nothing here allocates per packet: all arrays are sized at construction
 * (and grown, rarely, when a batch is larger than any before).
 */
import { EXPRESS_MAX_BATCH, HEADER_LEN, TAG_LEN } from './backend.js';
import { CompressionAlgo } from './compression.js';
import { countDrop, type PipelineContext } from './context.js';
import { DropReason } from './drop-reasons.js';
import { Flags, MessageType, OVERHEAD, PMTU_PROBE_MAX_PAYLOAD, PMTU_REPLY_PAYLOAD, RELAY_ID_LEN, RENDEZVOUS_MAX_PAYLOAD, encodeHeader, type MessageTypeValue } from './framing.js';
import { IcmpConst, internetChecksum } from './icmp.js';
import { clampMss } from './mss-clamp.js';
import { PeerCounter, type Peer, type Session } from './peer-table.js';
import { IpOffset, contains } from './routing-table.js';

/**
 * Largest inner packet for a peer reached through relay `via`: the path to
 * the relay (its search's estimate, else the configured `mtu`) less the
 * relay layer (node id, header and tag), so that relayed datagrams are
 * not fragmented on the way.
 */
export function relayedMtu(via: Peer, mtu: number): number {
  return (via.innerMtu < mtu ? via.innerMtu : mtu) - RELAY_ID_LEN - OVERHEAD;
}

/** The per-batch TUN input (structurally `@cluevpn/tun`'s PacketBatch). */
export interface TunBatch {
  count: number;
  buffer: Buffer;
  offsets: Int32Array;
  lengths: Int32Array;
}

/**
 * Counters lent to C per send lease. Leases of one session (one per
 * (destination, source) pair, at most 64) run ahead of each other by at most
 * 64 × 64 = 4096 counters, inside the peer's replay window of 8160.
 */
export const TX_LEASE_BLOCK = 64;

/**
 * Room a payload needs in front of it and behind it to be framed where it
 * lies, relayed or not: the relay layer's header and the peer's node id, then
 * the data header; the data tag, then the relay layer's tag.
 */
const FRONT_ROOM = HEADER_LEN + RELAY_ID_LEN + HEADER_LEN;
const BACK_ROOM = 2 * TAG_LEN;

/** Bytes per slot of the send arena and the ICMP arena (implementation). */
const ICMP_SLOT = IcmpConst.V6_MAX_REPLY;
/** Free bytes before and after each held packet (≥ header and tag, for in-place framing). */
const HOLD_ROOM = 64;

/** Packets of one peer kept while it has no session: a small TUN-like batch. */
interface Hold {
  /** performance.now() of the first packet held. */
  since: number;
  batch: TunBatch;
}

/**
 * Steps 8 and 9 for one payload already at `out[payloadOff ..]`: LZ4 in
 * place when the session compresses and it shrinks, then the header of
 * `type` in the 20 bytes before. Returns the payload length to seal.
 */
export function compressAndFrame(ctx: PipelineContext, out: Buffer, payloadOff: number, len: number, s: Session, type: MessageTypeValue, counter: number): number {
  let flags = 0;
  let plen = len;
  if (s.compressAlgo === CompressionAlgo.LZ4) {
    const c = ctx.codec.compressInPlace(out, payloadOff, len, s.compressLevel);
    if (c > 0) {
      plen = c;
      flags = Flags.COMPRESSED;
    }
  }
  encodeHeader(out, payloadOff - HEADER_LEN, type, flags, s.remoteIndex, s.txEpoch, counter);
  return plen;
}

/**
 * Step 6, shared with switch mode (switch.ts): takes the next counter of
 * session `s`, or returns -1 after counting 'counter-limit' and asking for a
 * rekey; asks once for the soft rekey. Voids the express send leases when
 * `s` may hold one.
 */
export function takeTxCounter(ctx: PipelineContext, s: Session, now: number): number {
  const peer = s.peer;
  const limits = ctx.limits;
  const counter = s.txCounter;
  if (counter >= limits.rejectAfterMessages) {
    countDrop(ctx, peer, DropReason.COUNTER_LIMIT);
    ctx.events.rekeyNeeded(peer, 'counter-limit', now);
    return -1;
  }
  s.txCounter = counter + 1;
  if (s.expressTxGen === ctx.peers.expressTxGen[0]) ctx.peers.voidExpressTx();
  if (counter >= limits.rekeyAfterMessages && !s.softRekeyAsked) {
    s.softRekeyAsked = true;
    ctx.events.rekeyNeeded(peer, 'counter-soft-limit', now);
  }
  return counter;
}

/** The send pipeline of one data plane. */
export class SendPipeline {
  private readonly ctx: PipelineContext;
  private readonly inPlace: boolean;
  private readonly arenaSlot: number;
  private cap = 0;
  private arena: Buffer = Buffer.alloc(0);
  private offs = new Int32Array(0);
  private payloadLens = new Int32Array(0);
  private wireLens = new Int32Array(0);
  private innerLens = new Int32Array(0);
  /** 1 for a datagram framed as a relay request (step 10). */
  private viaRelay = new Uint8Array(0);
  private handles = new Int32Array(0);
  private slots = new Int32Array(0);
  private sessions: Array<Session | null> = [];
  private icmpArena: Buffer = Buffer.alloc(0);
  private icmpOffs = new Int32Array(0);
  private icmpLens = new Int32Array(0);
  private readonly one = { offs: new Int32Array(1), lens: new Int32Array(1), handles: new Int32Array(1), slots: new Int32Array(1), mac: Uint8Array.of(1) };
  private readonly holds = new Map<Peer, Hold>();
  private readonly holdSlot: number;
  private depth = 0;
  private readonly pendingFlush = new Set<Peer>();
  /** True once the express send path is set up (Dataplane). */
  expressOn = false;
  /** Family, destination and source of the last packet of a small read (step 12). */
  private readonly leaseAddrs = new Uint8Array(33);

  constructor(ctx: PipelineContext) {
    this.ctx = ctx;
    const t = ctx.tun;
    this.inPlace = t.headroom >= FRONT_ROOM && t.slotSize - t.headroom - ctx.mtu >= BACK_ROOM;
    this.arenaSlot = (FRONT_ROOM + ctx.mtu + BACK_ROOM + 63) & ~63;
    this.holdSlot = (2 * HOLD_ROOM + ctx.mtu + 63) & ~63;
    this.grow(64);
  }

  /** True when packets are framed inside the TUN's own slots (no copy). */
  get zeroCopy(): boolean {
    return this.inPlace;
  }

  private grow(n: number): void {
    if (n <= this.cap) return;
    const cap = Math.max(n, this.cap * 2);
    this.cap = cap;
    if (!this.inPlace) this.arena = Buffer.alloc(cap * this.arenaSlot);
    this.offs = new Int32Array(cap);
    this.payloadLens = new Int32Array(cap);
    this.wireLens = new Int32Array(cap);
    this.innerLens = new Int32Array(cap);
    this.viaRelay = new Uint8Array(cap);
    this.macOffs = new Int32Array(cap);
    this.macLens = new Int32Array(cap);
    this.macHandles = new Int32Array(cap);
    this.macOnes = new Uint8Array(cap).fill(1);
    this.handles = new Int32Array(cap);
    this.slots = new Int32Array(cap);
    this.sessions = new Array<Session | null>(cap).fill(null);
    this.icmpArena = Buffer.alloc(cap * ICMP_SLOT);
    this.icmpOffs = new Int32Array(cap);
    this.icmpLens = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.icmpOffs[i] = i * ICMP_SLOT;
  }

  /**
   * Processes one TUN batch (steps 1–11). The batch is borrowed: it is
   * rewritten in place (header and tag around each packet) and must not be
   * used by the caller afterwards; nothing is retained after return.
   */
  onTunBatch(batch: TunBatch): void {
    this.depth++;
    try {
      this.process(batch);
    } finally {
      this.depth--;
    }
    if (this.depth === 0 && this.pendingFlush.size > 0) this.flushPending();
  }

  private process(batch: TunBatch): void {
    const ctx = this.ctx;
    const count = batch.count;
    if (count > this.cap) this.grow(count);
    const buf = batch.buffer;
    const out = this.inPlace ? buf : this.arena;
    const mtu = ctx.mtu;
    const routes = ctx.peers.routes;
    const bySlot = ctx.peers.bySlot;
    const local = ctx.localSubnets;
    const checkLocal = local.size > 0;
    const limits = ctx.limits;
    const generation = ctx.peers.generation;
    const now = performance.now();
    let n = 0;
    let nIcmp = 0;
    let nRelayed = 0;
    for (let i = 0; i < count; i++) {
      const off = batch.offsets[i];
      const len = batch.lengths[i];
      // 2. IP version and length
      const v = len > 0 ? buf[off] >>> 4 : 0;
      let family: 4 | 6;
      let dstOff: number;
      let srcOff: number;
      if (v === 4 && len >= 20) {
        family = 4;
        dstOff = off + IpOffset.V4_DST;
        srcOff = off + IpOffset.V4_SRC;
      } else if (v === 6 && len >= 40) {
        family = 6;
        dstOff = off + IpOffset.V6_DST;
        srcOff = off + IpOffset.V6_SRC;
      } else {
        countDrop(ctx, null, DropReason.NOT_IP);
        continue;
      }
      if (len > mtu) {
        countDrop(ctx, null, DropReason.OVERSIZE);
        continue;
      }
      // 3. local source
      if (checkLocal && !contains(local, buf, srcOff, family)) {
        countDrop(ctx, null, DropReason.BAD_SOURCE);
        continue;
      }
      // 4. route
      const slot = routes.lookup(buf, dstOff, family);
      const peer: Peer | undefined = slot >= 0 ? bySlot[slot] : undefined;
      if (peer === undefined) {
        countDrop(ctx, null, DropReason.NO_ROUTE);
        const l = ctx.icmp.build(buf, off, len, this.icmpArena, this.icmpOffs[nIcmp], now);
        if (l > 0) this.icmpLens[nIcmp++] = l;
        continue;
      }
      // 5. session and endpoint
      const s = peer.primary;
      if (s === null) {
        if (limits.holdPackets === 0 || !this.hold(peer, buf, off, len, now)) countDrop(ctx, peer, DropReason.NO_SESSION);
        ctx.events.noSession(peer, now);
        continue;
      }
      const via = peer.relay;
      if (via === null ? !peer.hasEndpoint : via.primary === null || !via.hasEndpoint) {
        countDrop(ctx, peer, DropReason.NO_ENDPOINT);
        continue;
      }
      if (via !== null) nRelayed++;
      // 5b. path MTU (through a relay: the path to the relay, less the relay layer)
      const pathMtu = via === null ? peer.innerMtu : relayedMtu(via, mtu);
      if (len > pathMtu) {
        if (family === 4 && (buf[off + 6] & 0x40) === 0 && this.fragment(buf, off, len, pathMtu)) continue;
        countDrop(ctx, peer, DropReason.TOO_BIG);
        const l = ctx.icmp.buildTooBig(buf, off, len, pathMtu, this.icmpArena, this.icmpOffs[nIcmp], now);
        if (l > 0) this.icmpLens[nIcmp++] = l;
        continue;
      }
      if (ctx.clampMss) clampMss(buf, off, len, pathMtu < mtu ? pathMtu : mtu);
      // A session arrived during this batch (installed by an event handler)
      // while older packets wait in the hold: queue behind them, keep order.
      if (this.holds.size > 0 && this.heldCount(peer) > 0 && this.holdMore(peer, buf, off, len)) continue;
      // 6. counter
      const counter = takeTxCounter(ctx, s, now);
      if (counter < 0) continue;
      if (ctx.acl.active) ctx.acl.outbound(buf, off, len, now);
      // (step 12 needs the addresses of the last packet, before compression rewrites it)
      if (count <= EXPRESS_MAX_BATCH && this.expressOn) this.noteAddrs(buf, family, dstOff, srcOff);
      // 7. placement
      let payloadOff: number;
      if (this.inPlace) payloadOff = off;
      else {
        payloadOff = n * this.arenaSlot + FRONT_ROOM;
        buf.copy(out, payloadOff, off, off + len);
      }
      // 8. compression, 9. header
      const plen = compressAndFrame(ctx, out, payloadOff, len, s, MessageType.DATA, counter);
      this.offs[n] = payloadOff - HEADER_LEN;
      this.payloadLens[n] = plen;
      this.wireLens[n] = plen + OVERHEAD;
      this.innerLens[n] = len;
      this.handles[n] = s.txHandle;
      this.slots[n] = peer.slot;
      this.sessions[n] = s;
      n++;
    }
    // 10. seal and send
    if (n > 0) {
      if (ctx.peers.generation !== generation) n = this.dropRetired(n);
      ctx.crypto.sealBatch(out, n, this.offs, this.payloadLens, this.handles);
      if (nRelayed > 0) n = this.frameRelayed(out, n, now);
      else this.viaRelay.fill(0, 0, n);
      const sent = n > 0 ? ctx.socket.sendBatch(out, n, this.offs, this.wireLens, this.slots) : 0;
      // 12. express lease
      if (count <= EXPRESS_MAX_BATCH && n > 0 && sent === n && this.expressOn && ctx.peers.generation === generation) {
        this.leaseTx(this.sessions[n - 1] as Session);
      }
      for (let j = 0; j < n; j++) {
        const peer = (this.sessions[j] as Session).peer;
        this.sessions[j] = null;
        if (j < sent) {
          const c = peer.counters;
          c[PeerCounter.TX_PACKETS]++;
          c[PeerCounter.TX_BYTES] += this.innerLens[j];
          if (this.viaRelay[j] === 1) {
            c[PeerCounter.RELAYED_TX_PACKETS]++;
            c[PeerCounter.RELAYED_TX_BYTES] += this.innerLens[j];
          }
        } else countDrop(ctx, peer, DropReason.SEND_FAILED);
      }
    }
    // 11. ICMP replies
    if (nIcmp > 0) this.writeIcmp(nIcmp);
    // 5b. fragments cut from IPv4 packets without DF (they fit the peer's path now)
    if (this.frags.count > 0 && !this.flushingFrags) this.flushFragments();
  }

  /** Fragments waiting to go through the pipeline (step 5b), in slots with room for header and tag. */
  private readonly frags: TunBatch = { count: 0, buffer: Buffer.alloc(0), offsets: new Int32Array(0), lengths: new Int32Array(0) };

  /**
   * Step 5b for an IPv4 packet without DF (RFC 791 fragmentation, like
   * tinc's `fragment_ipv4_packet`): appends its fragments, each at most
   * `maxLen` bytes, to {@link frags}. Options are copied into every
   * fragment (simpler than the copied-flag rule and still valid). False
   * (nothing appended) when it cannot be cut: a header that leaves no room
   * for 8 bytes of data.
   */
  private fragment(buf: Buffer, off: number, len: number, maxLen: number): boolean {
    const ihl = (buf[off] & 0x0f) * 4;
    const total = (buf[off + 2] << 8) | buf[off + 3];
    if (ihl < 20 || total > len || total < ihl) return false;
    const step = (maxLen - ihl) & ~7;
    if (step < 8) return false;
    const data = total - ihl;
    const n = Math.ceil(data / step);
    const f = this.frags;
    if (f.count + n > f.offsets.length) {
      const cap = Math.max(f.count + n, 2 * f.offsets.length, 16);
      const slot = (2 * HOLD_ROOM + this.ctx.mtu + 63) & ~63;
      const nb = Buffer.alloc(cap * slot);
      const no = new Int32Array(cap);
      const nl = new Int32Array(cap);
      for (let i = 0; i < cap; i++) no[i] = i * slot + HOLD_ROOM;
      for (let i = 0; i < f.count; i++) {
        f.buffer.copy(nb, no[i], f.offsets[i], f.offsets[i] + f.lengths[i]);
        nl[i] = f.lengths[i];
      }
      f.buffer = nb;
      f.offsets = no;
      f.lengths = nl;
    }
    const flagsOff = ((buf[off + 6] << 8) | buf[off + 7]) & 0x3fff; // MF and offset of the original (it may be a fragment)
    const baseOff = flagsOff & 0x1fff;
    const moreAfter = (flagsOff & 0x2000) !== 0;
    for (let k = 0; k < n; k++) {
      const dOff = k * step;
      const dLen = Math.min(step, data - dOff);
      const o = f.offsets[f.count];
      buf.copy(f.buffer, o, off, off + ihl);
      buf.copy(f.buffer, o + ihl, off + ihl + dOff, off + ihl + dOff + dLen);
      const tl = ihl + dLen;
      f.buffer[o + 2] = tl >>> 8;
      f.buffer[o + 3] = tl & 0xff;
      const fo = baseOff + dOff / 8;
      const mf = k < n - 1 || moreAfter ? 0x2000 : 0;
      f.buffer[o + 6] = ((mf | fo) >>> 8) & 0xff;
      f.buffer[o + 7] = fo & 0xff;
      f.buffer[o + 10] = 0;
      f.buffer[o + 11] = 0;
      const c = internetChecksum(f.buffer, o, ihl);
      f.buffer[o + 10] = c >>> 8;
      f.buffer[o + 11] = c & 0xff;
      f.lengths[f.count++] = tl;
    }
    this.fragmented++;
    return true;
  }

  /** IPv4 packets without DF cut into fragments for a peer's path (stats). */
  fragmented = 0;

  private flushingFrags = false;

  private flushFragments(): void {
    // The fragments fit (they were cut for the path), so none is cut again.
    this.flushingFrags = true;
    try {
      this.process(this.frags);
    } finally {
      this.frags.count = 0;
      this.flushingFrags = false;
    }
  }

  // ---- step 10 for relayed peers ----
  private macOffs = new Int32Array(0);
  private macLens = new Int32Array(0);
  private macHandles = new Int32Array(0);
  /** All 1: the relay layer is authenticated, not encrypted (sealBatch's `macOnly`). */
  private macOnes = new Uint8Array(0);
  /** Scratch of one relayed keepalive or rendezvous message. */
  private readonly relOne = Buffer.alloc(2 * OVERHEAD + RELAY_ID_LEN + RENDEZVOUS_MAX_PAYLOAD);

  /**
   * Step 10 for relayed peers, after the data seal: each such datagram gets,
   * where it lies (FRONT_ROOM / BACK_ROOM), the peer's node id and a relay
   * request header of the relay's session in front and, after one MAC pass
   * over the lot, the relay layer's tag behind; it is then sent to the relay.
   * Compacts away the datagrams whose relay lost its session or endpoint
   * meanwhile. Returns the count left to send; sets `viaRelay`.
   */
  private frameRelayed(out: Buffer, n: number, now: number): number {
    const ctx = this.ctx;
    let w = 0;
    let k = 0;
    for (let j = 0; j < n; j++) {
      const s = this.sessions[j] as Session;
      const peer = s.peer;
      const via = peer.relay;
      let relayed = 0;
      if (via !== null) {
        const rs = via.primary;
        if (rs === null || !via.hasEndpoint) {
          countDrop(ctx, peer, DropReason.NO_ENDPOINT);
          this.sessions[j] = null;
          continue;
        }
        const counter = takeTxCounter(ctx, rs, now);
        if (counter < 0) {
          this.sessions[j] = null;
          continue;
        }
        const o = this.offs[j] - RELAY_ID_LEN - HEADER_LEN;
        encodeHeader(out, o, MessageType.RELAY, 0, rs.remoteIndex, rs.txEpoch, counter);
        out.writeUInt32BE(peer.num, o + HEADER_LEN);
        this.macOffs[k] = o;
        this.macLens[k] = RELAY_ID_LEN + this.wireLens[j];
        this.macHandles[k++] = rs.txHandle;
        this.offs[j] = o;
        this.wireLens[j] += RELAY_ID_LEN + OVERHEAD;
        this.slots[j] = via.slot;
        relayed = 1;
      }
      if (w !== j) {
        this.offs[w] = this.offs[j];
        this.wireLens[w] = this.wireLens[j];
        this.innerLens[w] = this.innerLens[j];
        this.slots[w] = this.slots[j];
        this.sessions[w] = s;
        this.sessions[j] = null;
      }
      this.viaRelay[w++] = relayed;
    }
    if (k > 0) ctx.crypto.sealBatch(out, k, this.macOffs, this.macLens, this.macHandles, this.macOnes);
    return w;
  }

  private noteAddrs(buf: Buffer, family: 4 | 6, dstOff: number, srcOff: number): void {
    const a = this.leaseAddrs;
    const len = family === 4 ? 4 : 16;
    a.fill(0);
    a[0] = family;
    for (let k = 0; k < len; k++) {
      a[1 + k] = buf[dstOff + k];
      a[17 + k] = buf[srcOff + k];
    }
  }

  /** Step 12 (rare: once per block of counters or after a change; allocates the lease record). */
  private leaseTx(s: Session): void {
    const ctx = this.ctx;
    const peer = s.peer;
    // A relayed peer gets no lease: C would send to its endpoint, not through the relay (native/README.md).
    if (!this.inPlace || s.retired || peer.primary !== s || s.compressAlgo !== CompressionAlgo.NONE || !peer.hasEndpoint || peer.relay !== null) return;
    if (ctx.socket.expressTxLease === undefined) return;
    const base = s.txCounter;
    const room = ctx.limits.rekeyAfterMessages - base;
    if (room < 1) return;
    const gen = ctx.peers.expressTxGen[0];
    const counterCount = Math.min(TX_LEASE_BLOCK, room);
    // The block is the session's no more: JavaScript goes on after it, whatever C does with it.
    s.txCounter = base + counterCount;
    s.expressTxGen = gen;
    // Refused only for a stale generation or a closed socket: C then keeps none, nothing to count.
    ctx.socket.expressTxLease({
      addrs: this.leaseAddrs,
      slot: peer.slot,
      remoteIndex: s.remoteIndex,
      epoch: s.txEpoch,
      txHandle: s.txHandle,
      counterBase: base,
      counterCount,
      gen,
      counters: peer.counters,
      maxLen: peer.innerMtu < ctx.mtu ? peer.innerMtu : ctx.mtu,
    });
  }

  /** Step 5: keeps a copy of a packet for a peer without a session (rare path; allocates once per peer). False when it was not kept. */
  private hold(peer: Peer, buf: Buffer, off: number, len: number, now: number): boolean {
    const limits = this.ctx.limits;
    let h = this.holds.get(peer);
    if (h !== undefined && now - h.since > limits.holdMs) this.discard(peer, h);
    if (h === undefined || h.batch.count === 0) {
      if (h === undefined) {
        if (this.holds.size >= limits.holdPeers) this.expireHolds(now);
        if (this.holds.size >= limits.holdPeers) return false;
        const n = limits.holdPackets;
        const batch: TunBatch = { count: 0, buffer: Buffer.alloc(n * this.holdSlot), offsets: new Int32Array(n), lengths: new Int32Array(n) };
        for (let i = 0; i < n; i++) batch.offsets[i] = i * this.holdSlot + HOLD_ROOM;
        h = { since: now, batch };
        this.holds.set(peer, h);
      }
      h.since = now;
    }
    const b = h.batch;
    if (b.count >= b.offsets.length) return false; // full: the newest are not kept (TCP resends them)
    buf.copy(b.buffer, b.offsets[b.count], off, off + len);
    b.lengths[b.count++] = len;
    return true;
  }

  /** Empties a hold, counting its packets as dropped ('no-session'). */
  private discard(peer: Peer, h: Hold): void {
    this.ctx.drops[DropReason.NO_SESSION] += h.batch.count;
    peer.countDrop(DropReason.NO_SESSION, h.batch.count);
    h.batch.count = 0;
  }

  /** Appends to a non-empty hold; false when it is full. */
  private holdMore(peer: Peer, buf: Buffer, off: number, len: number): boolean {
    const b = (this.holds.get(peer) as Hold).batch;
    if (b.count >= b.offsets.length) return false;
    buf.copy(b.buffer, b.offsets[b.count], off, off + len);
    b.lengths[b.count++] = len;
    return true;
  }

  private expireHolds(now: number): void {
    for (const [peer, h] of this.holds) {
      if (h.batch.count === 0 || now - h.since > this.ctx.limits.holdMs) {
        this.discard(peer, h);
        this.holds.delete(peer);
      }
    }
  }

  /**
   * Sends the packets held for `peer` through the pipeline now that it may
   * have a primary session (call after installing or promoting one). Packets
   * older than `holdMs` are discarded. Called from inside a TUN batch (an
   * event handler installed the session synchronously), the flush runs when
   * that batch is done. Does nothing when nothing is held.
   */
  flushHeld(peer: Peer): void {
    if (!this.holds.has(peer)) return;
    if (this.depth > 0) {
      this.pendingFlush.add(peer);
      return;
    }
    const h = this.holds.get(peer) as Hold;
    if (peer.primary === null) return; // still nothing to send with: keep holding
    this.holds.delete(peer);
    if (performance.now() - h.since > this.ctx.limits.holdMs) this.discard(peer, h);
    if (h.batch.count === 0) return;
    this.onTunBatch(h.batch);
  }

  /** Packets held for `peer` right now (tests, diagnostics). */
  heldCount(peer: Peer): number {
    return this.holds.get(peer)?.batch.count ?? 0;
  }

  /** Forgets what is held for `peer` (removed peer). */
  dropHeld(peer: Peer): void {
    const h = this.holds.get(peer);
    if (h !== undefined) this.discard(peer, h);
    this.holds.delete(peer);
    this.pendingFlush.delete(peer);
  }

  private flushPending(): void {
    const peers = [...this.pendingFlush];
    this.pendingFlush.clear();
    for (const p of peers) this.flushHeld(p);
  }

  /** An event handler retired sessions mid-batch: remove their packets (rare path). */
  private dropRetired(n: number): number {
    let w = 0;
    for (let j = 0; j < n; j++) {
      const s = this.sessions[j] as Session;
      if (s.retired) {
        countDrop(this.ctx, s.peer, DropReason.NO_SESSION);
        this.sessions[j] = null;
        continue;
      }
      this.offs[w] = this.offs[j];
      this.payloadLens[w] = this.payloadLens[j];
      this.wireLens[w] = this.wireLens[j];
      this.innerLens[w] = this.innerLens[j];
      this.handles[w] = this.handles[j];
      this.slots[w] = this.slots[j];
      this.sessions[w] = s;
      w++;
    }
    return w;
  }

  private writeIcmp(n: number): void {
    try {
      this.ctx.tun.writeBatch(this.icmpArena, this.icmpOffs, this.icmpLens, n);
    } catch (err) {
      // The device was closed under us (shutdown race): count, do not throw into the TUN reader.
      this.ctx.drops[DropReason.TUN_WRITE_FAILED] += n;
      this.lastTunError = err;
    }
  }

  /** The last exception from a TUN write (diagnostics). */
  lastTunError: unknown = undefined;

  /**
   * Sends one keepalive (empty, authenticated) to `peer` with its primary
   * session: through its relay when it has one, unless `direct` (a probe of
   * the direct path, which the peer's answer proves again). Returns false (and counts the drop) when the peer has no
   * session or endpoint or the counter is exhausted.
   */
  sendKeepalive(peer: Peer, direct = false): boolean {
    if (this.sendControl(peer, MessageType.KEEPALIVE, 0, direct) !== 'sent') return false;
    if (direct && peer.relay !== null) {
      // a probe: the keepalive scheduler must still send the ones that keep the relayed path alive
      peer.counters[PeerCounter.PROBES_TX]++;
      return true;
    }
    peer.counters[PeerCounter.KEEPALIVES_TX]++;
    peer.counters[PeerCounter.LAST_KEEPALIVE_TX_MS] = Date.now();
    return true;
  }

  /**
   * Sends a path-MTU probe (pmtu.ts) of `payloadLen` bytes (≥ 4: the id
   * `id`, then zeros) to `peer`. 'too-big' when the kernel refused it for
   * its size (EMSGSIZE: the socket sends with DF), 'failed' for any other
   * reason (counted like a keepalive's).
   */
  sendProbe(peer: Peer, payloadLen: number, id: number): 'sent' | 'too-big' | 'failed' {
    if (payloadLen < 4 || payloadLen > PMTU_PROBE_MAX_PAYLOAD) return 'failed';
    const c = this.ctl;
    c.fill(0, HEADER_LEN, HEADER_LEN + payloadLen);
    c.writeUInt32BE(id >>> 0, HEADER_LEN);
    return this.sendControl(peer, MessageType.PMTU_PROBE, payloadLen);
  }

  /** Answers probe `id` that arrived as a datagram of `wireLen` bytes. */
  sendProbeReply(peer: Peer, id: number, wireLen: number): boolean {
    const c = this.ctl;
    c.writeUInt32BE(id >>> 0, HEADER_LEN);
    c.writeUInt32BE(wireLen >>> 0, HEADER_LEN + 4);
    return this.sendControl(peer, MessageType.PMTU_REPLY, PMTU_REPLY_PAYLOAD) === 'sent';
  }

  /** Sends one rendezvous message (type 3; the caller checked 1..512 bytes) like a keepalive. */
  sendRendezvous(peer: Peer, payload: Uint8Array): boolean {
    if (payload.length > RENDEZVOUS_MAX_PAYLOAD) return false;
    this.ctl.set(payload, HEADER_LEN);
    if (this.sendControl(peer, MessageType.RENDEZVOUS, payload.length) !== 'sent') return false;
    this.ctx.rendezvousTx++;
    return true;
  }

  /** Control messages (keepalive, probes, rendezvous) are framed here: header, payload, tag. */
  private readonly ctl = Buffer.alloc(HEADER_LEN + Math.max(PMTU_PROBE_MAX_PAYLOAD, RENDEZVOUS_MAX_PAYLOAD) + TAG_LEN);

  /**
   * Seals and sends one control message whose payload is already at
   * `ctl[20 ..]`: through the peer's relay when it has one, unless `direct`
   * or a path-MTU probe or reply (they measure the direct path).
   */
  private sendControl(peer: Peer, type: MessageTypeValue, payloadLen: number, direct = false): 'sent' | 'too-big' | 'failed' {
    const ctx = this.ctx;
    const s = peer.primary;
    if (s === null) {
      countDrop(ctx, peer, DropReason.NO_SESSION);
      return 'failed';
    }
    const via = direct || type === MessageType.PMTU_PROBE || type === MessageType.PMTU_REPLY ? null : peer.relay;
    if (via !== null) return this.sendControlVia(peer, s, via, type, payloadLen) ? 'sent' : 'failed';
    if (!peer.hasEndpoint) {
      countDrop(ctx, peer, DropReason.NO_ENDPOINT);
      return 'failed';
    }
    if (s.txCounter >= ctx.limits.rejectAfterMessages) {
      countDrop(ctx, peer, DropReason.COUNTER_LIMIT);
      ctx.events.rekeyNeeded(peer, 'counter-limit', performance.now());
      return 'failed';
    }
    if (s.expressTxGen === ctx.peers.expressTxGen[0]) ctx.peers.voidExpressTx();
    const k = this.ctl;
    encodeHeader(k, 0, type, 0, s.remoteIndex, s.txEpoch, s.txCounter++);
    const o = this.one;
    o.offs[0] = 0;
    o.lens[0] = payloadLen;
    o.handles[0] = s.txHandle;
    o.slots[0] = peer.slot;
    ctx.crypto.sealBatch(k, 1, o.offs, o.lens, o.handles);
    o.lens[0] = payloadLen + OVERHEAD;
    const tooBig = type === MessageType.PMTU_PROBE ? this.tooBigCount() : 0;
    if (ctx.socket.sendBatch(k, 1, o.offs, o.lens, o.slots) !== 1) {
      // A probe refused for its size is an answer, not a loss: not counted as a drop.
      if (type === MessageType.PMTU_PROBE && this.tooBigCount() > tooBig) return 'too-big';
      countDrop(ctx, peer, DropReason.SEND_FAILED);
      return 'failed';
    }
    return 'sent';
  }

  /** The native socket's EMSGSIZE count (0 for a backend without it). Allocates: probes only. */
  tooBigCount(): number {
    return (this.ctx.socket as { stats?: () => { txTooBig?: number } }).stats?.().txTooBig ?? 0;
  }

  /** {@link sendControl} through relay `via` (payload ≤ 512 bytes at `ctl[20 ..]`): sealed for the peer, then wrapped as a relay request for `via`. */
  private sendControlVia(peer: Peer, s: Session, via: Peer, type: MessageTypeValue, plen: number): boolean {
    const ctx = this.ctx;
    const rs = via.primary;
    if (rs === null || !via.hasEndpoint) {
      countDrop(ctx, peer, DropReason.NO_ENDPOINT);
      return false;
    }
    const now = performance.now();
    if (s.txCounter >= ctx.limits.rejectAfterMessages || rs.txCounter >= ctx.limits.rejectAfterMessages) {
      countDrop(ctx, peer, DropReason.COUNTER_LIMIT);
      ctx.events.rekeyNeeded(s.txCounter >= ctx.limits.rejectAfterMessages ? peer : via, 'counter-limit', now);
      return false;
    }
    if (s.expressTxGen === ctx.peers.expressTxGen[0] || rs.expressTxGen === ctx.peers.expressTxGen[0]) ctx.peers.voidExpressTx();
    if (plen > RENDEZVOUS_MAX_PAYLOAD) {
      countDrop(ctx, peer, DropReason.OVERSIZE);
      return false;
    }
    const b = this.relOne;
    const io = HEADER_LEN + RELAY_ID_LEN; // the inner datagram, sealed in place
    encodeHeader(b, io, type, 0, s.remoteIndex, s.txEpoch, s.txCounter++);
    this.ctl.copy(b, io + HEADER_LEN, HEADER_LEN, HEADER_LEN + plen);
    const o = this.one;
    o.offs[0] = io;
    o.lens[0] = plen;
    o.handles[0] = s.txHandle;
    ctx.crypto.sealBatch(b, 1, o.offs, o.lens, o.handles);
    encodeHeader(b, 0, MessageType.RELAY, 0, rs.remoteIndex, rs.txEpoch, rs.txCounter++);
    b.writeUInt32BE(peer.num, HEADER_LEN);
    o.offs[0] = 0;
    o.lens[0] = RELAY_ID_LEN + plen + OVERHEAD;
    o.handles[0] = rs.txHandle;
    ctx.crypto.sealBatch(b, 1, o.offs, o.lens, o.handles, o.mac);
    o.lens[0] += OVERHEAD;
    o.slots[0] = via.slot;
    if (ctx.socket.sendBatch(b, 1, o.offs, o.lens, o.slots) !== 1) {
      countDrop(ctx, peer, DropReason.SEND_FAILED);
      return false;
    }
    peer.counters[PeerCounter.RELAYED_TX_PACKETS]++;
    return true;
  }
}
