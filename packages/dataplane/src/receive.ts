/**
 * Receive pipeline: datagrams from the UDP socket → IP packets into the TUN.
 *
 * 1. UDP batch in (borrowed: valid until this handler returns; decrypted in
 *    place, so the socket's slab holds plaintext afterwards).
 * 2. Check the header without keys: length, version, type, flags, reserved,
 *    counter range, payload ≤ MTU ('truncated', 'bad-version', 'bad-type',
 *    'bad-flags', 'malformed', 'oversize', 'bad-counter').
 * 3. Find the session by receiver index ('unknown-index').
 * 4. Epoch below the session's floor or its newest epoch: 'old-epoch'.
 * 5. Replay `check` in the current epoch (no state change): 'replayed'
 *    (counted in step 7 at the datagram's place, as 'old-epoch' if a
 *    datagram before it in the batch moved the epoch on).
 * 6. One `openBatch` for everything that passed (relay messages, types 4
 *    and 5, with `macOnly`: their tag is a MAC over header and payload,
 *    there is nothing to decrypt).
 * 7. Per datagram, in order: steps 3–5 again against the state the
 *    datagrams before it left, so that no verdict depends on where a batch
 *    ends; then not authentic → 'auth-failed' (+ burst event). Authentic:
 *    a newer epoch resets the window and raises `onRxEpoch`; replay
 *    `update` (catches duplicates within the batch); last-rx time.
 * 8. Roaming: the newest authentic packet from a new source address moves
 *    the peer's endpoint (`onEndpointChange`).
 * 9. Keepalive: counted (`keepalivesRx`, last time), done. Rendezvous
 *    (type 3): counted, its payload copied out to `onRendezvous`, done. Path-MTU probe:
 *    answered with a reply; reply: handed to the peer's search (pmtu.ts,
 *    through `ctx.pmtu`), done.
 *    Relay request (type 4, relay role): forwarded (step 13), done.
 *    Relayed datagram (type 5): its inner datagram is staged (step 14),
 *    done. Data: decompress when flagged (bounded by the MTU:
 *    'decompress-failed' / 'decompress-bomb') into the decompression arena.
 * 10. Inner packet must be IPv4/IPv6 with a consistent length ('not-ip')
 *     and a source inside the peer's subnets ('spoofed'); with an access
 *     policy in force, allowed by a rule or a reply to our own traffic
 *     ('acl', acl.ts). In switch mode (`ctx.frames`), an Ethernet frame
 *     whose source MAC the peer may use (switch.ts, mac-table.ts:
 *     'not-ethernet', 'spoofed', 'mac-table-full'); access rules do not
 *     apply to frames. In router mode, TCP SYNs get their MSS clamped to
 *     the peer's inner path MTU (mss-clamp.ts, when `clampMss`; the
 *     express path hands SYNs to this pipeline).
 * 11. Per-peer rx counters; one TUN `writeBatch` for the packets still in
 *     the socket's slab and one for the decompressed ones.
 * 12. Express lease: when a small batch (≤ EXPRESS_MAX_BATCH datagrams:
 *     what idle traffic looks like) delivered a datagram uncompressed, its
 *     session's receive state is lent to the native socket
 *     (`expressLease`), which then delivers the datagrams of that session's
 *     next small batches to the TUN in C, without entering JavaScript, for as long as nothing changes (every
 *     change that matters bumps `PeerTable.expressGen`, including a newer
 *     epoch here). See native/src/express.c for the checks it repeats.
 *
 * 13. Relay role (type 4 from member M, authenticated by the M↔us
 *     session, so a non-member never gets here: its datagrams end as
 *     'unknown-index' / 'auth-failed' and are counted in
 *     `relayUnauthenticated`): refused unless this node relays
 *     ('relay-refused'); the inner datagram must look like one
 *     ('relay-malformed'); the target must be another peer with a primary
 *     session and an endpoint ('relay-no-target') — peers are the current
 *     list's members, so relaying is authorised against it; M's packet and
 *     byte buckets ('relay-limit'). Then the request is rewritten in place
 *     into the type 5 for the target (same length: the target session's
 *     header, M's id, and after the batch one `sealBatch` with `macOnly`
 *     for the new tags): the inner datagram is neither read, copied nor
 *     encrypted again. One `sendBatch` from the socket's slab; counted per
 *     member (from / to) and in total.
 * 14. Relayed datagram (type 5 from relay R): the source id must name a
 *     peer other than R ('relay-malformed'); the inner datagram, where it
 *     lies in the socket's slab (not copied), is after the batch run through steps 2–11 as
 *     coming from the source — with its own session, replay window, spoof
 *     check and access rules — except that it moves no endpoint (step 8:
 *     R's address is not the source's), counts as relayed (`LAST_RELAYED_
 *     RX_MS`, not `LAST_RX_MS`, which stays "heard directly"), gets no
 *     express lease, and may not be a relay message itself
 *     ('relay-malformed'); its session must be the named source's
 *     ('relay-malformed').
 *
 * Nothing is allocated per packet (event handlers aside, which are rate-
 * limited or rare).
 */
import { EXPRESS_MAX_BATCH, HEADER_LEN, SOURCE_LEN, TAG_LEN, type DatagramBatch } from './backend.js';
import { DecompressError } from './compression.js';
import { countDrop, type PipelineContext } from './context.js';
import { DropReason } from './drop-reasons.js';
import { Flags, MessageType, OVERHEAD, RELAY_ID_LEN, checkHeader, encodeHeader, readCounter, readEpoch, readFlags, readReceiverIndex, readType } from './framing.js';
import { relayedMtu, takeTxCounter } from './send.js';
import { decodeEndpoint } from './ip-address.js';
import { clampMss } from './mss-clamp.js';
import { PeerCounter, type Peer, type Session } from './peer-table.js';
import { IpOffset, contains } from './routing-table.js';

const EMPTY = Buffer.alloc(0);

/** The receive pipeline of one data plane. */
export class ReceivePipeline {
  private readonly ctx: PipelineContext;
  private cap = 0;
  private offs = new Int32Array(0);
  private lens = new Int32Array(0);
  private handles = new Int32Array(0);
  private ok = new Uint8Array(0);
  /** Per datagram of step 6: 1 for a relay message (types 4 and 5), whose tag is a MAC over it (nothing to decrypt). */
  private macOnly = new Uint8Array(0);
  private source = new Int32Array(0);
  private counters = new Float64Array(0);
  private epochs = new Float64Array(0);
  /**
   * Step 5's replay drops, whose reason is given in step 7 at their place
   * in the batch (see `dropDeferred`): source index, session, epoch.
   */
  private deferSrc: number[] = [];
  private deferSess: Session[] = [];
  private deferEpoch: number[] = [];
  private sessions: Array<Session | null> = [];
  private plainOffs = new Int32Array(0);
  private plainLens = new Int32Array(0);
  private decArena: Buffer = Buffer.alloc(0);
  private decViews: Buffer[] = [];
  private decOffs = new Int32Array(0);
  private decLens = new Int32Array(0);
  private readonly decSlot: number;
  /** The last exception from a TUN write (diagnostics). */
  lastTunError: unknown = undefined;

  constructor(ctx: PipelineContext) {
    this.ctx = ctx;
    this.decSlot = (ctx.mtu + 63) & ~63;
    this.grow(64);
  }

  private grow(n: number): void {
    if (n <= this.cap) return;
    const cap = Math.max(n, this.cap * 2);
    this.cap = cap;
    this.offs = new Int32Array(cap);
    this.lens = new Int32Array(cap);
    this.handles = new Int32Array(cap);
    this.ok = new Uint8Array(cap);
    this.macOnly = new Uint8Array(cap);
    this.source = new Int32Array(cap);
    this.counters = new Float64Array(cap);
    this.epochs = new Float64Array(cap);
    this.sessions = new Array<Session | null>(cap).fill(null);
    this.plainOffs = new Int32Array(cap);
    this.plainLens = new Int32Array(cap);
    this.decArena = Buffer.alloc(cap * this.decSlot);
    this.decViews = [];
    // Views of exactly `mtu` bytes: the LZ4 decoder's output bound.
    for (let i = 0; i < cap; i++) this.decViews.push(this.decArena.subarray(i * this.decSlot, i * this.decSlot + this.ctx.mtu));
    this.decOffs = new Int32Array(cap);
    this.decLens = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.decOffs[i] = i * this.decSlot;
  }

  // ---- relaying (steps 13 and 14): allocated on first use ----
  private relayCap = 0;
  /** The socket batch's buffer that the forwarded datagrams are rewritten in (step 13; valid during `onDatagrams`). */
  private fwdBuf: Buffer = Buffer.alloc(0);
  private fwdOffs = new Int32Array(0);
  private fwdPlens = new Int32Array(0);
  private fwdWire = new Int32Array(0);
  private fwdHandles = new Int32Array(0);
  private fwdSlots = new Int32Array(0);
  private fwdFrom: Array<Peer | null> = [];
  private fwdTo: Array<Session | null> = [];
  private fwdN = 0;
  private innerN = 0;
  private innerFrom: Array<Peer | null> = [];
  private inner: DatagramBatch = { count: 0, buffer: Buffer.alloc(0), offsets: new Int32Array(0), lengths: new Int32Array(0), sources: Buffer.alloc(0) };
  /** True while step 14 runs an inner batch through steps 2–11. */
  private relayed = false;

  /** Sizes the relay arrays for `this.cap` datagrams (rare: first relay message, or a larger batch than any before). */
  private growRelay(): void {
    if (this.relayCap >= this.cap) return;
    const cap = this.cap;
    this.relayCap = cap;
    this.fwdOffs = new Int32Array(cap);
    this.fwdPlens = new Int32Array(cap);
    this.fwdWire = new Int32Array(cap);
    this.fwdHandles = new Int32Array(cap);
    this.fwdSlots = new Int32Array(cap);
    this.fwdFrom = new Array<Peer | null>(cap).fill(null);
    this.fwdTo = new Array<Session | null>(cap).fill(null);
    this.innerFrom = new Array<Peer | null>(cap).fill(null);
    this.inner = { count: 0, buffer: Buffer.alloc(0), offsets: new Int32Array(cap), lengths: new Int32Array(cap), sources: Buffer.alloc(cap * SOURCE_LEN) };
  }

  /** Processes one UDP batch (steps 1–14). Never throws for any datagram content. */
  onDatagrams(batch: DatagramBatch): void {
    this.process(batch);
    if (this.fwdN > 0) this.flushForward();
    if (this.innerN > 0) {
      const inner = this.inner;
      inner.count = this.innerN;
      this.innerN = 0;
      this.relayed = true;
      try {
        this.process(inner);
      } finally {
        this.relayed = false;
        for (let i = 0; i < inner.count; i++) this.innerFrom[i] = null;
        inner.buffer = EMPTY; // the socket's slab, borrowed for this call only
      }
    }
  }

  /** Steps 2–12 for one batch (the socket's, or step 14's inner batch when `this.relayed`). */
  private process(batch: DatagramBatch): void {
    const ctx = this.ctx;
    const relayed = this.relayed;
    const count = batch.count;
    if (count > this.cap) this.grow(count);
    const buf = batch.buffer;
    const mtu = ctx.mtu;
    const byIndex = ctx.peers.byIndex;
    let n = 0;
    // 2–5: checks before any key is used
    for (let i = 0; i < count; i++) {
      const off = batch.offsets[i];
      const len = batch.lengths[i];
      const r = checkHeader(buf, off, len, mtu, ctx.dataType);
      if (r !== DropReason.NONE) {
        countDrop(ctx, null, r);
        continue;
      }
      if (relayed) {
        const t = readType(buf, off);
        if (t === MessageType.RELAY || t === MessageType.RELAYED) {
          countDrop(ctx, this.innerFrom[i], DropReason.RELAY_MALFORMED);
          continue;
        }
      }
      const s = byIndex.get(readReceiverIndex(buf, off));
      if (s === undefined) {
        countDrop(ctx, null, DropReason.UNKNOWN_INDEX);
        if (readType(buf, off) === MessageType.RELAY) ctx.relayUnauthenticated++;
        continue;
      }
      if (relayed && s.peer !== this.innerFrom[i]) {
        countDrop(ctx, this.innerFrom[i], DropReason.RELAY_MALFORMED);
        continue;
      }
      const epoch = readEpoch(buf, off);
      const counter = readCounter(buf, off);
      if (epoch < s.rxEpochFloor || epoch < s.rxEpoch) {
        countDrop(ctx, s.peer, DropReason.OLD_EPOCH);
        continue;
      }
      if (epoch === s.rxEpoch && !s.window.check(counter)) {
        // dropped, but counted in step 7 at its place: an earlier datagram of this batch may move the epoch past it
        this.deferSrc.push(i);
        this.deferSess.push(s);
        this.deferEpoch.push(epoch);
        continue;
      }
      const t = readType(buf, off);
      this.offs[n] = off;
      this.lens[n] = len;
      this.macOnly[n] = t === MessageType.RELAY || t === MessageType.RELAYED ? 1 : 0;
      this.handles[n] = s.rxHandle;
      this.sessions[n] = s;
      this.source[n] = i;
      this.counters[n] = counter;
      this.epochs[n] = epoch;
      n++;
    }
    if (n === 0) {
      this.dropDeferred(count);
      return;
    }
    // 6: one AEAD call
    ctx.crypto.openBatch(buf, n, this.offs, this.lens, this.handles, this.ok, this.macOnly);
    const now = performance.now();
    this.now = now;
    const wall = Date.now();
    let nPlain = 0;
    let nDec = 0;
    let lease: Session | null = null;
    for (let j = 0; j < n; j++) {
      const s = this.sessions[j] as Session;
      this.sessions[j] = null;
      const peer = s.peer;
      this.dropDeferred(this.source[j]);
      // 7: steps 3–5 again with the state the datagrams before this one
      // left (the verdict of a datagram does not depend on where a batch
      // ends), then the AEAD's verdict, epoch, replay
      if (s.retired) {
        countDrop(ctx, peer, DropReason.UNKNOWN_INDEX);
        continue;
      }
      const epoch = this.epochs[j];
      const counter = this.counters[j];
      if (epoch < s.rxEpoch) {
        countDrop(ctx, peer, DropReason.OLD_EPOCH);
        continue;
      }
      if (epoch === s.rxEpoch && !s.window.check(counter)) {
        countDrop(ctx, peer, DropReason.REPLAYED);
        continue;
      }
      if (this.ok[j] !== 1) {
        countDrop(ctx, peer, DropReason.AUTH_FAILED);
        if (readType(buf, this.offs[j]) === MessageType.RELAY) ctx.relayUnauthenticated++;
        peer.counters[PeerCounter.AUTH_FAILURES]++;
        ctx.events.authFailure(peer, now);
        continue;
      }
      let newest: boolean;
      let epochAdvanced = false;
      if (epoch > s.rxEpoch) {
        s.rxEpoch = epoch;
        s.window.reset();
        epochAdvanced = true;
        newest = true;
      } else newest = counter > s.window.newest;
      if (!s.window.update(counter)) {
        countDrop(ctx, peer, DropReason.REPLAYED);
        continue;
      }
      if (relayed) {
        peer.counters[PeerCounter.LAST_RELAYED_RX_MS] = wall;
        peer.counters[PeerCounter.RELAYED_RX_PACKETS]++;
      } else peer.counters[PeerCounter.LAST_RX_MS] = wall;
      if (epochAdvanced) {
        ctx.peers.voidExpress();
        ctx.events.rxEpoch(peer, s.localIndex, epoch);
      }
      // 8: roaming (never from a relayed datagram: it came from the relay's address)
      if (newest && !relayed) this.roam(peer, batch.sources, this.source[j] * SOURCE_LEN);
      // 9: payload
      const off = this.offs[j];
      const type = readType(buf, off);
      if (type === MessageType.RELAY) {
        this.forward(peer, buf, off, this.lens[j] - OVERHEAD, now);
        continue;
      }
      if (type === MessageType.RELAYED) {
        this.stageInner(peer, buf, off + HEADER_LEN, this.lens[j] - OVERHEAD, batch.sources, this.source[j] * SOURCE_LEN);
        continue;
      }
      if (type === MessageType.KEEPALIVE) {
        peer.counters[PeerCounter.KEEPALIVES_RX]++;
        peer.counters[PeerCounter.LAST_KEEPALIVE_RX_MS] = wall;
        continue;
      }
      if (type === MessageType.RENDEZVOUS) {
        ctx.rendezvousRx++;
        // copied: the socket's slab is reused after this handler returns
        ctx.events.rendezvous(peer, Buffer.from(buf.subarray(off + HEADER_LEN, off + this.lens[j] - TAG_LEN)));
        continue;
      }
      if (type === MessageType.PMTU_PROBE) {
        ctx.pmtu.onProbe(peer, buf.readUInt32BE(off + HEADER_LEN), this.lens[j]);
        continue;
      }
      if (type === MessageType.PMTU_REPLY) {
        ctx.pmtu.onReply(peer, buf.readUInt32BE(off + HEADER_LEN));
        continue;
      }
      const pOff = off + HEADER_LEN;
      const plen = this.lens[j] - OVERHEAD;
      if ((readFlags(buf, off) & Flags.COMPRESSED) !== 0) {
        const out = this.decViews[nDec];
        const m = ctx.codec.decompress(buf, pOff, plen, out);
        if (m < 0) {
          countDrop(ctx, peer, m === DecompressError.BOMB ? DropReason.DECOMPRESS_BOMB : DropReason.DECOMPRESS_FAILED);
          continue;
        }
        // 10: inner checks
        const dOff = this.decOffs[nDec];
        if (!(ctx.frames === null ? this.innerOk(peer, this.decArena, dOff, m) : ctx.frames.acceptFrame(peer, this.decArena, dOff, m, now))) continue;
        if (ctx.clampMss && ctx.frames === null) {
          const pathMtu = peer.relay === null ? peer.innerMtu : relayedMtu(peer.relay, mtu);
          clampMss(this.decArena, dOff, m, pathMtu < mtu ? pathMtu : mtu);
        }
        this.decLens[nDec++] = m;
        peer.counters[PeerCounter.RX_PACKETS]++;
        peer.counters[PeerCounter.RX_BYTES] += m;
        if (relayed) peer.counters[PeerCounter.RELAYED_RX_BYTES] += m;
      } else {
        if (!(ctx.frames === null ? this.innerOk(peer, buf, pOff, plen) : ctx.frames.acceptFrame(peer, buf, pOff, plen, now))) continue;
        if (ctx.clampMss && ctx.frames === null) {
          const pathMtu = peer.relay === null ? peer.innerMtu : relayedMtu(peer.relay, mtu);
          clampMss(buf, pOff, plen, pathMtu < mtu ? pathMtu : mtu);
        }
        this.plainOffs[nPlain] = pOff;
        this.plainLens[nPlain++] = plen;
        peer.counters[PeerCounter.RX_PACKETS]++;
        peer.counters[PeerCounter.RX_BYTES] += plen;
        if (relayed) peer.counters[PeerCounter.RELAYED_RX_BYTES] += plen;
        else if (count <= EXPRESS_MAX_BATCH) lease = s;
      }
    }
    this.dropDeferred(count);
    // 12: express lease
    if (lease !== null && this.expressOn && lease.expressGen !== ctx.peers.expressGen[0] && !lease.retired) this.lease(lease);
    // 11: into the TUN
    if (nPlain > 0) this.writeTun(buf, this.plainOffs, this.plainLens, nPlain);
    if (nDec > 0) this.writeTun(this.decArena, this.decOffs, this.decLens, nDec);
  }

  /**
   * Counts step 5's replay drops of the batch that came before datagram
   * `before`, each with the reason a datagram-by-datagram pipeline would
   * give it now: 'old-epoch' when a datagram between moved its session's
   * epoch past it, else 'replayed'. (The window and the epoch only move
   * forward, so a datagram step 5 refused stays refused; only the reason
   * could depend on where the batch ended.)
   */
  private dropDeferred(before: number): void {
    const src = this.deferSrc;
    if (src.length === 0 || src[0] >= before) return;
    let k = 0;
    for (; k < src.length && src[k] < before; k++) {
      const s = this.deferSess[k];
      countDrop(this.ctx, s.peer, this.deferEpoch[k] < s.rxEpoch ? DropReason.OLD_EPOCH : DropReason.REPLAYED);
    }
    src.splice(0, k);
    this.deferSess.splice(0, k);
    this.deferEpoch.splice(0, k);
  }

  /** True once the socket's express path is set up (Dataplane). */
  expressOn = false;

  /** Step 12 (rare: once per session and lease generation; allocates the subnet list). */
  private lease(s: Session): void {
    const ctx = this.ctx;
    const peer = s.peer;
    const gen = ctx.peers.expressGen[0];
    s.expressGen = gen;
    // A relayed peer gets no lease: its path is decided here, per packet, and C does not know it (native/README.md).
    if (!peer.hasEndpoint || peer.relay !== null || ctx.socket.expressLease === undefined) return;
    const subnets = new Uint8Array(18 * peer.subnets.length);
    peer.subnets.forEach((p, i) => {
      subnets[18 * i] = p.family;
      subnets[18 * i + 1] = p.length;
      subnets.set(p.bytes, 18 * i + 2);
    });
    // Refused (more than 16 subnets, or the socket closed): the session stays in JavaScript until the next generation.
    ctx.socket.expressLease({
      localIndex: s.localIndex,
      rxHandle: s.rxHandle,
      epoch: s.rxEpoch,
      gen,
      window: s.window.state,
      counters: peer.counters,
      endpointKey: peer.endpointKey,
      subnets,
    });
  }

  /**
   * Step 13 for one authenticated relay request from `from` at `buf[off ..]`
   * (`plen` payload bytes: target id, inner datagram): checks, then rewrites
   * it in place into the relayed datagram for the target (same length: new
   * header, the source's id, new tag), sent after the batch.
   */
  private forward(from: Peer, buf: Buffer, off: number, plen: number, now: number): void {
    const ctx = this.ctx;
    const pOff = off + HEADER_LEN;
    if (!ctx.relaying || from.num < 0) {
      countDrop(ctx, from, DropReason.RELAY_REFUSED);
      return;
    }
    const iOff = pOff + RELAY_ID_LEN;
    const ilen = plen - RELAY_ID_LEN;
    const it = readType(buf, iOff);
    if (checkHeader(buf, iOff, ilen, ctx.mtu, ctx.dataType) !== DropReason.NONE || it === MessageType.RELAY || it === MessageType.RELAYED) {
      countDrop(ctx, from, DropReason.RELAY_MALFORMED);
      return;
    }
    const target = ctx.peers.byNum.get(buf.readUInt32BE(pOff));
    const ts = target === undefined ? null : target.primary;
    if (target === undefined || target === from || ts === null || !target.hasEndpoint) {
      countDrop(ctx, from, DropReason.RELAY_NO_TARGET);
      return;
    }
    // the member's buckets (refilled by elapsed time, allocation-free)
    const l = ctx.limits;
    if (from.relayPktTokens < 0) {
      from.relayPktTokens = l.relayPacketBurst;
      from.relayByteTokens = l.relayByteBurst;
      from.relayRefillMs = now;
    }
    const dt = (now - from.relayRefillMs) / 1000;
    from.relayRefillMs = now;
    from.relayPktTokens = Math.min(l.relayPacketBurst, from.relayPktTokens + dt * l.relayPacketsPerSecond);
    from.relayByteTokens = Math.min(l.relayByteBurst, from.relayByteTokens + dt * l.relayBytesPerSecond);
    if (from.relayPktTokens < 1 || from.relayByteTokens < ilen) {
      countDrop(ctx, from, DropReason.RELAY_LIMIT);
      return;
    }
    from.relayPktTokens -= 1;
    from.relayByteTokens -= ilen;
    const counter = takeTxCounter(ctx, ts, now);
    if (counter < 0) return;
    this.growRelay();
    const k = this.fwdN++;
    // in place: the inner datagram stays where it is, unread and uncopied
    encodeHeader(buf, off, MessageType.RELAYED, 0, ts.remoteIndex, ts.txEpoch, counter);
    buf.writeUInt32BE(from.num, pOff);
    this.fwdBuf = buf;
    this.fwdOffs[k] = off;
    this.fwdPlens[k] = RELAY_ID_LEN + ilen;
    this.fwdWire[k] = RELAY_ID_LEN + ilen + OVERHEAD;
    this.fwdHandles[k] = ts.txHandle;
    this.fwdSlots[k] = target.slot;
    this.fwdFrom[k] = from;
    this.fwdTo[k] = ts;
  }

  /** Step 13, after the batch: one MAC pass (nothing encrypted again), one send, the counters. */
  private flushForward(): void {
    const ctx = this.ctx;
    let n = 0;
    // a session retired by an event handler during the batch: its datagrams go nowhere
    for (let k = 0; k < this.fwdN; k++) {
      const ts = this.fwdTo[k] as Session;
      if (ts.retired) {
        countDrop(ctx, ts.peer, DropReason.NO_SESSION);
        continue;
      }
      this.fwdOffs[n] = this.fwdOffs[k];
      this.fwdPlens[n] = this.fwdPlens[k];
      this.fwdWire[n] = this.fwdWire[k];
      this.fwdHandles[n] = this.fwdHandles[k];
      this.fwdSlots[n] = this.fwdSlots[k];
      this.fwdFrom[n] = this.fwdFrom[k];
      this.fwdTo[n] = ts;
      n++;
    }
    this.fwdN = 0;
    if (n > 0) {
      const mac = this.macAll(n);
      ctx.crypto.sealBatch(this.fwdBuf, n, this.fwdOffs, this.fwdPlens, this.fwdHandles, mac);
      const sent = ctx.socket.sendBatch(this.fwdBuf, n, this.fwdOffs, this.fwdWire, this.fwdSlots);
      for (let k = 0; k < n; k++) {
        const from = this.fwdFrom[k] as Peer;
        const to = (this.fwdTo[k] as Session).peer;
        const bytes = this.fwdPlens[k] - RELAY_ID_LEN;
        if (k < sent) {
          from.counters[PeerCounter.RELAY_FROM_PACKETS]++;
          from.counters[PeerCounter.RELAY_FROM_BYTES] += bytes;
          to.counters[PeerCounter.RELAY_TO_PACKETS]++;
          to.counters[PeerCounter.RELAY_TO_BYTES] += bytes;
          ctx.relayForwarded++;
          ctx.relayForwardedBytes += bytes;
        } else countDrop(ctx, to, DropReason.SEND_FAILED);
      }
    }
    for (let k = 0; k < this.fwdFrom.length; k++) {
      this.fwdFrom[k] = null;
      this.fwdTo[k] = null;
    }
    this.fwdBuf = EMPTY;
  }

  /** `macOnly` flags of 1 for `n` packets (step 13's sealBatch). */
  private macAll(n: number): Uint8Array {
    if (this.ones.length < n) this.ones = new Uint8Array(this.cap).fill(1);
    return this.ones;
  }
  private ones = new Uint8Array(0);

  /**
   * Step 14 for one authenticated relayed datagram from relay `via`: stages
   * its inner datagram, where it lies in the socket's slab (not copied), for
   * after the batch.
   */
  private stageInner(via: Peer, buf: Buffer, pOff: number, plen: number, sources: Buffer, so: number): void {
    const src = this.ctx.peers.byNum.get(buf.readUInt32BE(pOff));
    const ilen = plen - RELAY_ID_LEN;
    this.growRelay();
    if (src === undefined || src === via) {
      countDrop(this.ctx, via, DropReason.RELAY_MALFORMED);
      return;
    }
    const k = this.innerN++;
    this.inner.buffer = buf;
    this.inner.offsets[k] = pOff + RELAY_ID_LEN;
    this.inner.lengths[k] = ilen;
    // the relay's address, as the socket reported it: step 8 must not take it for the source's
    sources.copy(this.inner.sources, k * SOURCE_LEN, so, so + SOURCE_LEN);
    this.innerFrom[k] = src;
  }

  /** Step 10 for one packet: IP well-formedness and the spoof check. Counts the drop. */
  private innerOk(peer: Peer, b: Buffer, off: number, len: number): boolean {
    const v = b[off] >>> 4;
    if (v === 4 && len >= 20) {
      const total = (b[off + 2] << 8) | b[off + 3];
      if ((b[off] & 0x0f) < 5 || total < 20 || total > len) {
        countDrop(this.ctx, peer, DropReason.NOT_IP);
        return false;
      }
      if (!contains(peer.subnetSet, b, off + IpOffset.V4_SRC, 4)) {
        countDrop(this.ctx, peer, DropReason.SPOOFED);
        return false;
      }
      return this.aclOk(peer, b, off, len);
    }
    if (v === 6 && len >= 40) {
      if (40 + ((b[off + 4] << 8) | b[off + 5]) > len) {
        countDrop(this.ctx, peer, DropReason.NOT_IP);
        return false;
      }
      if (!contains(peer.subnetSet, b, off + IpOffset.V6_SRC, 6)) {
        countDrop(this.ctx, peer, DropReason.SPOOFED);
        return false;
      }
      return this.aclOk(peer, b, off, len);
    }
    countDrop(this.ctx, peer, DropReason.NOT_IP);
    return false;
  }

  /** performance.now() of the batch being processed (the access policy's clock). */
  private now = 0;

  /** Step 10, the access policy (acl.ts): nothing to do without one. Counts the drop. */
  private aclOk(peer: Peer, b: Buffer, off: number, len: number): boolean {
    const acl = this.ctx.acl;
    if (!acl.active || acl.inbound(b, off, len, this.now)) return true;
    countDrop(this.ctx, peer, DropReason.ACL);
    return false;
  }

  /** Step 8: moves the peer's endpoint to the datagram's source when it differs. */
  private roam(peer: Peer, sources: Buffer, so: number): void {
    if (peer.hasEndpoint && sources.compare(peer.endpointKey, 0, SOURCE_LEN, so, so + SOURCE_LEN) === 0) return;
    const { host, port } = decodeEndpoint(sources, so);
    if (port === 0) return;
    try {
      this.ctx.peers.setEndpoint(peer, host, port);
    } catch (err) {
      // A source the socket reported but we cannot address (should not happen): keep the old endpoint.
      this.ctx.events.endpointError(peer, err);
      return;
    }
    this.ctx.events.endpointChange(peer, host, port);
  }

  private writeTun(b: Buffer, offs: Int32Array, lens: Int32Array, n: number): void {
    try {
      this.ctx.tun.writeBatch(b, offs, lens, n);
    } catch (err) {
      // The device was closed under us (shutdown race): count, never throw into the socket reader.
      this.ctx.drops[DropReason.TUN_WRITE_FAILED] += n;
      this.lastTunError = err;
    }
  }
}
