/**
 * `@cluevpn/daemon`: cluevpnd's building blocks. The program itself is
 * `src/main.ts` (`bin/cluevpnd`); this is the public surface for tests and
 * for tools that need the config parser.
 */
export { loadConfig, parseConfig, locateConfig, confDir, runDir, stateBaseDir, CONFIG_KEYS, DEFAULT_MTU, DEFAULT_PORT, INLINE_PUBKEY_RE } from './config.js';
export { DEFAULT_CRYPTALGOS, DEFAULT_COMPALGOS } from './config.js';
export type { DaemonConfig, LogMethod, ConfigEnv, ConfigTarget, ParseConfigOptions } from './config.js';
export { createLogger, formatRecord, silentLogger, LogLevel, LOG_LEVEL_NAMES } from './logging.js';
export type { Logger, RootLogger, LoggerOptions, LogFields, LogFieldName, LogLevelNumber } from './logging.js';
export { startControlServer, prepareSocketPath, answer, CONTROL_PROTOCOL_VERSION, CONTROL_MAX_LINE } from './control.js';
export type { ControlHandlers, ControlServer, ControlServerOptions, StatusReport, PeerStatus, BnlStatusReport, ReloadResult, DropCounts } from './control.js';
export { createHookRunner } from './hooks.js';
export type { HookName, HookRunner, HookRunnerOptions, HookResult, HookBaseEnv, HookExtraEnv } from './hooks.js';
export { installSignalHandlers } from './signals.js';
export type { SignalActions, SignalHandle, SignalOptions } from './signals.js';
export { writePidfile, removePidfile, livePid } from './pidfile.js';
export { dropPrivileges, checkWritableAfterDrop, resolveAccount } from './privileges.js';
export type { PrivilegeTarget, PrivilegeDropResult, Account } from './privileges.js';
export { checkPrivilegeBoundary, findWritable, protectedPaths } from './protected-paths.js';
export type { AccountIds, ProtectedPath, OpenReason, WritableEntry } from './protected-paths.js';
export { prepareStateDir } from './state-dir.js';
export { startDaemon, chooseEndpoint, DAEMON_VERSION } from './daemon.js';
export type { DaemonOptions, RunningDaemon } from './daemon.js';
export { DaemonError, ConfigError, ControlServerError, HookError, PidfileError, PrivilegeError, UnsafePermissionsError } from './errors.js';
export type { DaemonErrorCode } from './errors.js';
