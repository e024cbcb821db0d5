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
 * Use: `check()` before spending the AEAD (no state change), `update()`
 * only after the packet authenticated; `update()` re-checks, so two copies
 * of one datagram in one batch are caught at the second update.
 */

const BLOCK_BITS = 32;
const RING_BLOCKS = 256; // power of two
/** Counters this far behind the newest one are still accepted once. */
export const REPLAY_WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS; // 8160
const MAX = Number.MAX_SAFE_INTEGER;

/** Per-(session, epoch) replay state. The zero value accepts counter 0 first. */
export class ReplayWindow {
  private readonly ring = new Uint32Array(RING_BLOCKS);
  private last = 0;

  /** The newest counter accepted by {@link update} (0 before any). */
  get newest(): number {
    return this.last;
  }

  /**
   * True when `counter` would be accepted now: a non-negative integer
   * ≤ 2^53 - 1, newer than the window's start and not yet seen.
   * Does not change the state.
   */
  check(counter: number): boolean {
    if (!(counter >= 0 && counter <= MAX)) return false;
    if (counter > this.last) return true;
    if (this.last - counter > REPLAY_WINDOW_SIZE) return false;
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
    if (counter > this.last) {
      const current = Math.floor(this.last / BLOCK_BITS);
      let diff = indexBlock - current;
      if (diff > RING_BLOCKS) diff = RING_BLOCKS;
      for (let i = current + 1; i <= current + diff; i++) this.ring[i % RING_BLOCKS] = 0;
      this.last = counter;
    } else if (this.last - counter > REPLAY_WINDOW_SIZE) {
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
    this.ring.fill(0);
    this.last = 0;
  }
}
