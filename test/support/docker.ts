// Tests that need Docker call this first. It never skips: under CI, and anywhere else, a
// missing engine or image fails the suite loudly with what to do about it.
import Docker from 'dockerode'
import { TEST_IMAGE } from './cluster.ts'

export async function requireDocker (): Promise<Docker> {
  const docker = new Docker()
  try {
    await docker.ping()
  } catch (err) {
    throw new Error(`Docker engine unreachable (${String(err)}). Run 'bash scripts/setup.sh' (installs docker.io, starts dockerd, builds ${TEST_IMAGE}).`)
  }
  try {
    await docker.getImage(TEST_IMAGE).inspect()
  } catch {
    throw new Error(`test image ${TEST_IMAGE} missing. Run 'bash scripts/setup.sh'.`)
  }
  return docker
}
