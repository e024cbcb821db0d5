/**
 * Values derived from the current list, built once per list: every request
 * is authorised against the list's records and every tick samples its
 * names, so those are not rebuilt per call (a 10 000-node list), and they
 * are rebuilt as soon as the store holds another list.
 */
import type { BnlStore, SignedBnl } from '@cluevpn/bnl';

/**
 * Returns a getter of `build(current list)`, rebuilt only when the store's
 * current list is another object than at the last call.
 */
export function perList<T>(bnl: Pick<BnlStore, 'current'>, build: (list: SignedBnl | null) => T): () => T {
  let memo: { list: SignedBnl | null; value: T } | undefined;
  return () => {
    const list = bnl.current;
    if (memo === undefined || memo.list !== list) memo = { list, value: build(list) };
    return memo.value;
  };
}
