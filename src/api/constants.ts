// Limits and media types shared by the server and its OpenAPI description (a module of
// their own so that the two do not import each other).
export const MAX_LIST_LIMIT = 10_000
/** GET /v1/jobs/{id}?waitMs: the longest a request waits for its job to finish (5 min). Proxies
 *  and clients commonly cut idle requests at a few minutes; a client that wants longer asks again. */
export const MAX_JOB_WAIT_MS = 300_000
export const YAML_CONTENT_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml']
