/**
 * The access policy's one hand-off: the node list's rules, resolved for this
 * node (`compilePolicy`, @cluevpn/bnl), are given to the data plane, which
 * alone holds and enforces them (acl.ts there). Called when a list is loaded
 * at start and every time a newer list is applied; nothing is kept here.
 */
import { compilePolicy, type Bnl } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';

/** The minimal logger this needs (the daemon's Logger fits). */
interface PolicyLogger {
  notice(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Puts the rules of `list` in force for node `selfName`: none when the list
 * has no rules (everything allowed), else the rules whose `to` matches this
 * node. The policy serial is the serial of the list the rules come from.
 */
export function applyPolicy(dp: Dataplane, list: Bnl, selfName: string, log: PolicyLogger): void {
  if (!list.nodes.some((n) => n.name === selfName)) {
    // The list removed this node (daemon.ts logs it): its peers refuse it; the policy in force stays.
    log.error('this node is not in the list: access policy left as it was', { serial: list.serial });
    return;
  }
  const policy = compilePolicy(list, selfName);
  dp.setPolicy(policy);
  if (policy !== null) log.notice('access policy in force', { serial: policy.serial, rules: list.rules?.length ?? 0, local: policy.rules.length });
}
