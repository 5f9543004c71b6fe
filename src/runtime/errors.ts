// Named errors of the container runtime. `code` is stable and what callers branch on;
// `retryable` tells the scheduler whether another attempt (here or elsewhere) can help.

/** The Docker engine cannot be reached (socket missing, connection refused or reset). */
export class DockerUnavailableError extends Error {
  static readonly code = 'ERR_DOCKER_UNAVAILABLE'
  readonly code = DockerUnavailableError.code
  /** the engine may come back, and another node may have a working one */
  readonly retryable = true
  constructor (message = 'the Docker engine cannot be reached', options?: ErrorOptions) {
    super(message, options)
    this.name = 'DockerUnavailableError'
  }
}

/** The job's image is not present locally and pulling it failed. */
export class ImageNotFoundError extends Error {
  static readonly code = 'ERR_IMAGE_NOT_FOUND'
  readonly code = ImageNotFoundError.code
  /** retrying the same image reference will fail the same way */
  readonly retryable = false
  constructor (readonly image: string, options?: ErrorOptions) {
    super(`image ${image} is missing locally and could not be pulled`, options)
    this.name = 'ImageNotFoundError'
  }
}

/** The engine refused to create or start the container. */
export class ContainerStartError extends Error {
  static readonly code = 'ERR_CONTAINER_START'
  readonly code = ContainerStartError.code
  /**
   * True by default (engine hiccups, name conflicts, resource exhaustion are transient);
   * false when the engine rejected the request itself (HTTP 4xx: a bad parameter or a
   * command that does not exist in the image), which no retry fixes.
   */
  readonly retryable: boolean
  constructor (message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(message, options)
    this.name = 'ContainerStartError'
    this.retryable = options?.retryable ?? true
  }
}
