// Limits and media types shared by the server and its OpenAPI description (a module of
// their own so that the two do not import each other).
export const MAX_LIST_LIMIT = 10_000
export const YAML_CONTENT_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml']
