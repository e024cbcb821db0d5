/**
 * Anti-replay sliding window (RFC 6479 style, as in wireguard-go `replay/`).
 *
 * A ring of 256 blocks of 32 bits covers the newest counter seen and the
 * {@link REPLAY_WINDOW_SIZE} (8160) counters before it. Moving the window
 * forward clears whole blocks instead of shifting bits, so an update costs
 * O(1) amortised (at most 256 block writes on a huge jump).
 *
 * Counters are numbers in `[0, 2^53 - 1]` (see `framing.ts`): block index
 * and bit are computed with division and remainder, which are exact on
 * such integers, never with 32-bit shifts. Nothing allocates.
 *
 * The state lives in one ArrayBuffer, {@link ReplayWindow.state}: the newest
 * counter as a float64 at byte 0, then the ring as 256 uint32 at byte 8.
 * The native express receive path (native/src/express.c) updates the same
 * memory with the same algorithm, on the same thread, so a counter either
 * side accepted is seen as used by the other.
 *
 * Use: `check()` before spending the AEAD (no state change), `update()`
 * only after the packet authenticated; `update()` re-checks, so two copies
 * of one datagram in one batch are caught at the second update.
 */

const BLOCK_BITS = 32;
const RING_BLOCKS = 256; // power of two
/** Counters this far behind the newest one are still accepted once. */
export const REPLAY_WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS; // 8160
const MAX = Number.MAX_SAFE_INTEGER;

/** Bytes of {@link ReplayWindow.state}. */
export const REPLAY_STATE_BYTES = 8 + RING_BLOCKS * 4;

/** Per-(session, epoch) replay state. The zero value accepts counter 0 first. */
export class ReplayWindow {
  /** The whole state (layout above), shared with the native express path. */
  readonly state = new Uint8Array(REPLAY_STATE_BYTES);
  private readonly newestCell = new Float64Array(this.state.buffer, 0, 1);
  private readonly ring = new Uint32Array(this.state.buffer, 8, RING_BLOCKS);

  /** The newest counter accepted by {@link update} (0 before any). */
  get newest(): number {
    return this.newestCell[0];
  }

  /**
   * True when `counter` would be accepted now: a non-negative integer
   * ≤ 2^53 - 1, newer than the window's start and not yet seen.
   * Does not change the state.
   */
  check(counter: number): boolean {
    if (!(counter >= 0 && counter <= MAX)) return false;
    const last = this.newestCell[0];
    if (counter > last) return true;
    if (last - counter > REPLAY_WINDOW_SIZE) return false;
    const block = Math.floor(counter / BLOCK_BITS) % RING_BLOCKS;
    return (this.ring[block] & (1 << counter % BLOCK_BITS)) === 0;
  }

  /**
   * Marks `counter` as seen, sliding the window forward if it is the newest.
   * Returns false (and changes nothing) when the counter is too old or was
   * already seen: the caller must then drop the packet as replayed.
   */
  update(counter: number): boolean {
    if (!(counter >= 0 && counter <= MAX)) return false;
    const indexBlock = Math.floor(counter / BLOCK_BITS);
    const last = this.newestCell[0];
    if (counter > last) {
      const current = Math.floor(last / BLOCK_BITS);
      let diff = indexBlock - current;
      if (diff > RING_BLOCKS) diff = RING_BLOCKS;
      for (let i = current + 1; i <= current + diff; i++) this.ring[i % RING_BLOCKS] = 0;
      this.newestCell[0] = counter;
    } else if (last - counter > REPLAY_WINDOW_SIZE) {
      return false;
    }
    const block = indexBlock % RING_BLOCKS;
    const bit = 1 << counter % BLOCK_BITS;
    const old = this.ring[block];
    if ((old & bit) !== 0) return false;
    this.ring[block] = old | bit;
    return true;
  }

  /** Forgets everything (new epoch): back to the zero value. */
  reset(): void {
    this.state.fill(0);
  }
}
