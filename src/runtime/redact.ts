// Secret redaction lives with the protocol (the API redacts specs with it too); the runtime
// keeps this path for its own imports.
export { REDACTED, type RedactOptions, envSecrets, redactSecrets, redactSpec, specSecrets } from '../protocol/redact.ts'
