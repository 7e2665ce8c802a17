import { fileURLToPath } from 'node:url'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { forkChild, nextMessage, reap } from './children.mjs'
import { resetDatabase } from './database.mjs'
import { SCRATCH_DIR, ensureDirs } from './paths.mjs'

const SCRIPT = fileURLToPath(new URL('../child/unchanged.mjs', import.meta.url))

/** Runs child/unchanged.mjs against a database; in a child so the figures come from a process like the app's. */
export async function measureUnchanged (dbPath) {
  ensureDirs()
  resetDatabase(dbPath)
  const scratchDir = mkdtempSync(join(SCRATCH_DIR, 'unchanged-'))
  const child = forkChild(SCRIPT, [dbPath, scratchDir])
  try {
    const result = await nextMessage(child, 'done', 10 * 60_000)
    await reap(child)
    return result
  } finally {
    child.kill('SIGKILL')
    rmSync(scratchDir, { recursive: true, force: true })
  }
}
