/**
 * `@cluevpn/negotiation`: the network CA and certificates, the mutual-TLS
 * control channel, per-pair negotiation with rekey, and the SQLite state
 * store. See README.md.
 */
export * from './errors.js';
export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export {
  RSA_KEY_BITS,
  MIN_CSR_KEY_BITS,
  DEFAULT_CA_DAYS,
  DEFAULT_CERT_DAYS,
  EXPIRY_WARNING_DAYS,
  isValidNodeName,
  generatePrivateKeyPem,
  fingerprintDer,
  fingerprintPem,
  normalizeFingerprint,
  createCa,
  createCsr,
  signCsr,
  issueCertificate,
  describeCertificate,
  csrCommonName,
  type Fingerprint,
  type CaMaterial,
  type CreateCaOptions,
  type SignOptions,
  type NodeCredentials,
  type CertificateInfo,
} from './ca.js';
export { initCaDir, requestCertFiles, signCsrFile, issueCertFiles, loadCaDir, CA_KEY_FILE, CA_CERT_FILE, type WrittenFiles } from './ca-files.js';
export { loadCredentials, splitPemCertificates, type CredentialFiles, type LoadedCredentials } from './credentials.js';
export { sourcePrefix, TokenBuckets, RefusalLog, REFUSAL_LOG_SOURCES, type RefusalLevel } from './admission.js';
export { authorizePeer, reasonForVerifyError, type PeerIdentity, type PeerPolicy, type AuthDecision } from './authorize.js';
export {
  CONTROL_PROTOCOL_VERSION,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  encodeFrame,
  parseMessage,
  type ControlMessage,
  type RequestMessage,
  type ResponseMessage,
  type ErrorMessage,
} from './framing.js';
export {
  EXPORTER_LABEL,
  EXPORTER_BYTES,
  DEFAULT_CONTROL_LIMITS,
  createControlServer,
  connectControl,
  policyAuthorizer,
  type ControlCredentials,
  type ControlLimits,
  type RequestContext,
  type RequestHandler,
  type ControlStats,
  type ControlServerOptions,
  type ControlServer,
  type ConnectOptions,
  type ControlConnection,
} from './channel.js';
export {
  CIPHER_ORDER,
  COMPRESSION_ORDER,
  DATAPLANE_CIPHER,
  parseCryptAlgos,
  parseCompAlgos,
  formatAlgos,
  chooseAlgorithms,
  readWireAlgos,
  type CipherAlgo,
  type CompressionAlgo,
  type DataplaneCipher,
  type AlgoPreference,
  type AlgoChoice,
} from './algorithms.js';
export { RANDOM_BYTES, KEY_BYTES, deriveSessionKeys, type KeyInput } from './keys.js';
export { SCHEMA_VERSION, MAX_EPOCH, StateStore, type StoredSession, type SessionStore, type StateStoreOptions } from './store.js';
export {
  NegotiationMessage,
  Negotiator,
  compareNodeNames,
  systemClock,
  type SessionParams,
  type SessionSummary,
  type NegotiationChannel,
  type NegotiationTransport,
  type IncomingContext,
  type Clock,
  type NegotiatorEvents,
  type NegotiatorOptions,
  type NegotiatorStats,
  type RekeyReason,
} from './negotiator.js';
export { createControlTransport, type ControlTransportOptions } from './control-transport.js';
