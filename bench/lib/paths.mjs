import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { mkdirSync } from 'node:fs'

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url))
export const CACHE_DIR = join(BENCH_DIR, '.cache')
export const RESULTS_DIR = join(BENCH_DIR, 'results')
// Backups and copies land here and are deleted after each measurement.
export const SCRATCH_DIR = join(CACHE_DIR, 'scratch')

export function ensureDirs () {
  for (const dir of [CACHE_DIR, RESULTS_DIR, SCRATCH_DIR]) mkdirSync(dir, { recursive: true })
}
