import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CACHE_DIR } from '../../lib/paths.mjs'

export const PROJECT_DIR = fileURLToPath(new URL('../../../', import.meta.url))
// Scratch directories of the runs (one per kill), deleted as each one is measured.
export const CONTINUOUS_CACHE = join(CACHE_DIR, 'continuous')
export { CACHE_DIR }
