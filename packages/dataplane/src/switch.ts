/**
 * Switch mode (`mode: 'switch'`): Ethernet frames between a TAP device and
 * the peers, forwarded by destination MAC like a learning bridge. Both
 * directions run here in TypeScript; no express lease is granted in this
 * mode (the C express path knows only IP packets), so the MAC decisions
 * exist once.
 *
 * Send (TAP → peers):
 * 1. TAP batch in (borrowed: valid until this handler returns).
 * 2. Frame check: at least an Ethernet header (14 bytes), a unicast source
 *    MAC ('not-ethernet'), at most the frame MTU ('oversize').
 * 3. Source MAC: ours (learned as MAC_LOCAL, or moved to us from a peer);
 *    one the BNL lists for another node is dropped ('bad-source').
 * 4. Destination MAC: group (broadcast/multicast) or unknown → flood to
 *    every peer; owned by a peer → that peer; on our own side → drop
 *    ('local-mac': the bridge delivers it there).
 * 5. Per target peer: no session → `onNoSession` (rate-limited) and drop
 *    'no-session' (frames are not held: ARP and ND retry); no endpoint →
 *    'no-endpoint'; the session's next counter (send.ts `takeTxCounter`).
 * 6. Copy the frame into the send arena (a flooded frame once per peer),
 *    LZ4 if it shrinks, header (type FRAME).
 * 7. One `sealBatch` + `sendBatch` per arena-full and per TAP batch.
 *
 * Receive (receive.ts step 10, {@link SwitchPipeline.acceptFrame}): a frame
 * from peer P goes to the TAP only — never on to other peers, so the mesh
 * cannot loop frames — when it has an Ethernet header and a unicast source
 * MAC P may use (mac-table.ts: first seen, fixed by the BNL, or moved after
 * its old owner fell silent for it); else 'not-ethernet', 'spoofed' or
 * 'mac-table-full'. The destination MAC is not checked: the bridge behind
 * the TAP decides.
 *
 * Nothing is allocated per frame except when a new MAC is learned.
 */
import { HEADER_LEN, TAG_LEN } from './backend.js';
import { countDrop, type FrameFilter, type PipelineContext } from './context.js';
import { DropReason } from './drop-reasons.js';
import { MessageType, OVERHEAD } from './framing.js';
import { MAC_LOCAL, MAC_UNKNOWN, MacTable, MacVerdict, isGroupMac, readMac, type MacTableOptions } from './mac-table.js';
import { PeerCounter, type Peer, type Session } from './peer-table.js';
import { compressAndFrame, takeTxCounter, type TunBatch } from './send.js';

/** Ethernet header: destination MAC, source MAC, EtherType (specification). */
export const ETH_HEADER_LEN = 14;
/**
 * Bytes a frame may carry beyond the IP MTU: the Ethernet header and one
 * 802.1Q tag (implementation). The data plane's payload bound in switch
 * mode is `mtu + FRAME_EXTRA`.
 */
export const FRAME_EXTRA = 18;
/** Datagrams per seal/send round (implementation): the arena's size. */
const ARENA_DATAGRAMS = 128;

/** Switch-mode counters (stats). */
export interface SwitchCounters {
  /** Frames from the TAP sent to every peer (group or unknown destination). */
  flooded: number;
  /** Frames from the TAP sent to the one peer owning the destination. */
  unicast: number;
}

/** Both directions of switch mode for one data plane; owns the MAC table. */
export class SwitchPipeline implements FrameFilter {
  private readonly ctx: PipelineContext;
  readonly macs: MacTable;
  readonly counters: SwitchCounters = { flooded: 0, unicast: 0 };
  private readonly slot: number;
  private readonly arena: Buffer;
  private readonly offs = new Int32Array(ARENA_DATAGRAMS);
  private readonly payloadLens = new Int32Array(ARENA_DATAGRAMS);
  private readonly wireLens = new Int32Array(ARENA_DATAGRAMS);
  private readonly innerLens = new Int32Array(ARENA_DATAGRAMS);
  private readonly handles = new Int32Array(ARENA_DATAGRAMS);
  private readonly slots = new Int32Array(ARENA_DATAGRAMS);
  private readonly sessions: Array<Session | null> = new Array<Session | null>(ARENA_DATAGRAMS).fill(null);
  private n = 0;
  private generation = 0;

  constructor(ctx: PipelineContext, macOptions: Partial<MacTableOptions> = {}) {
    this.ctx = ctx;
    this.macs = new MacTable(macOptions);
    this.slot = (HEADER_LEN + ctx.mtu + TAG_LEN + 63) & ~63;
    this.arena = Buffer.alloc(ARENA_DATAGRAMS * this.slot);
  }

  /** Send steps 1–7 for one TAP batch. The batch is only read; nothing is retained. */
  onTunBatch(batch: TunBatch): void {
    const ctx = this.ctx;
    const buf = batch.buffer;
    const mtu = ctx.mtu;
    const macs = this.macs;
    const bySlot = ctx.peers.bySlot;
    const now = performance.now();
    this.generation = ctx.peers.generation;
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      const len = batch.lengths[i]!;
      // 2. frame
      if (len < ETH_HEADER_LEN || isGroupMac(buf, off + 6)) {
        countDrop(ctx, null, DropReason.NOT_ETHERNET);
        continue;
      }
      if (len > mtu) {
        countDrop(ctx, null, DropReason.OVERSIZE);
        continue;
      }
      // 3. source
      if (macs.admitLocal(readMac(buf, off + 6), now) === MacVerdict.FOREIGN) {
        countDrop(ctx, null, DropReason.BAD_SOURCE);
        continue;
      }
      // 4. destination
      const owner = isGroupMac(buf, off) ? MAC_UNKNOWN : macs.lookup(readMac(buf, off), now);
      if (owner === MAC_LOCAL) {
        countDrop(ctx, null, DropReason.LOCAL_MAC);
        continue;
      }
      const target = owner >= 0 ? bySlot[owner] : undefined;
      if (target !== undefined) {
        this.counters.unicast++;
        this.enqueue(target, buf, off, len, now);
        continue;
      }
      this.counters.flooded++;
      for (let k = 0; k < bySlot.length; k++) {
        const p = bySlot[k];
        if (p !== undefined) this.enqueue(p, buf, off, len, now);
      }
    }
    if (this.n > 0) this.flush();
  }

  /** Steps 5–6 for one frame to one peer. */
  private enqueue(peer: Peer, buf: Buffer, off: number, len: number, now: number): void {
    const ctx = this.ctx;
    const s = peer.primary;
    if (s === null) {
      countDrop(ctx, peer, DropReason.NO_SESSION);
      ctx.events.noSession(peer, now);
      return;
    }
    if (!peer.hasEndpoint) {
      countDrop(ctx, peer, DropReason.NO_ENDPOINT);
      return;
    }
    const counter = takeTxCounter(ctx, s, now);
    if (counter < 0) return;
    if (this.n === ARENA_DATAGRAMS) this.flush();
    const n = this.n;
    const out = this.arena;
    const payloadOff = n * this.slot + HEADER_LEN;
    buf.copy(out, payloadOff, off, off + len);
    const plen = compressAndFrame(ctx, out, payloadOff, len, s, MessageType.FRAME, counter);
    this.offs[n] = payloadOff - HEADER_LEN;
    this.payloadLens[n] = plen;
    this.wireLens[n] = plen + OVERHEAD;
    this.innerLens[n] = len;
    this.handles[n] = s.txHandle;
    this.slots[n] = peer.slot;
    this.sessions[n] = s;
    this.n = n + 1;
  }

  /** Step 7: seal and send what the arena holds. */
  private flush(): void {
    const ctx = this.ctx;
    let n = this.n;
    this.n = 0;
    if (ctx.peers.generation !== this.generation) n = this.dropRetired(n); // an event handler retired a session
    if (n === 0) return;
    ctx.crypto.sealBatch(this.arena, n, this.offs, this.payloadLens, this.handles);
    const sent = ctx.socket.sendBatch(this.arena, n, this.offs, this.wireLens, this.slots);
    for (let j = 0; j < n; j++) {
      const peer = (this.sessions[j] as Session).peer;
      this.sessions[j] = null;
      if (j < sent) {
        peer.counters[PeerCounter.TX_PACKETS]++;
        peer.counters[PeerCounter.TX_BYTES] += this.innerLens[j]!;
      } else countDrop(ctx, peer, DropReason.SEND_FAILED);
    }
  }

  private dropRetired(n: number): number {
    let w = 0;
    for (let j = 0; j < n; j++) {
      const s = this.sessions[j] as Session;
      this.sessions[j] = null;
      if (s.retired) {
        countDrop(this.ctx, s.peer, DropReason.NO_SESSION);
        continue;
      }
      this.offs[w] = this.offs[j]!;
      this.payloadLens[w] = this.payloadLens[j]!;
      this.wireLens[w] = this.wireLens[j]!;
      this.innerLens[w] = this.innerLens[j]!;
      this.handles[w] = this.handles[j]!;
      this.slots[w] = this.slots[j]!;
      this.sessions[w] = s;
      w++;
    }
    return w;
  }

  /** Receive step 10 in switch mode (see the module comment). Counts the drop. */
  acceptFrame(peer: Peer, b: Buffer, off: number, len: number, nowMs: number): boolean {
    if (len < ETH_HEADER_LEN || isGroupMac(b, off + 6)) {
      countDrop(this.ctx, peer, DropReason.NOT_ETHERNET);
      return false;
    }
    const v = this.macs.admit(readMac(b, off + 6), peer.slot, nowMs);
    if (v === MacVerdict.ACCEPT) return true;
    countDrop(this.ctx, peer, v === MacVerdict.FULL ? DropReason.MAC_TABLE_FULL : DropReason.SPOOFED);
    return false;
  }
}
