// One measured backup: a fresh app process, a writer in another process, an idle window then the backup.
import { fileURLToPath } from 'node:url'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { forkChild, nextMessage, reap } from './children.mjs'
import { startWriter } from './writer.mjs'
import { resetDatabase } from './database.mjs'
import { verifyCopy } from './verify.mjs'
import { startIdleLoop } from './idle-loop.mjs'
import { SCRATCH_DIR, ensureDirs } from './paths.mjs'
import { methods } from '../methods/index.mjs'

const APP = fileURLToPath(new URL('../child/app.mjs', import.meta.url))
const WARMUP_MS = 300
// V8 shrinks the heap of an isolate that has gone quiet, from 8 s after it starts ("Mark-Compact (reduce)" in
// --trace-gc): a GC of the app's own heap whose incremental marking steps (up to 6.6 ms here) no 'gc' performance
// entry shows. By the bench's clock it lands inside the measured backup, whatever the method: at 200 MB/s the app's
// longest delay was 12-18 ms while an idle process met 5-13 ms; without it 4.8-9.8 ms against 3.8-7.8 ms. The app's
// other collections are unchanged: allocation still triggers them.
const APP_NODE_OPTIONS = ['--no-memory-reducer']
// No backup is expected to take this long; past it the measurement fails rather than hangs.
const BACKUP_LIMIT_MS = 10 * 60_000

export async function measureBackup ({ method, dbPath, idleMs, options = {} }) {
  ensureDirs()
  resetDatabase(dbPath)
  const scratchDir = mkdtempSync(join(SCRATCH_DIR, `${method}-`))
  const app = forkChild(APP, [method, dbPath, scratchDir, JSON.stringify(options)], { execArgv: APP_NODE_OPTIONS })
  let writer
  let bystander
  try {
    await nextMessage(app, 'ready', 60_000)
    bystander = await startIdleLoop()
    writer = await startWriter(dbPath)
    await sleep(WARMUP_MS)
    await writer.phase('idle')
    await sleep(idleMs)
    const lastId = await writer.phase('backup')
    const done = nextMessage(app, 'done', BACKUP_LIMIT_MS)
    bystander.watch()
    app.send({ type: 'go' })
    const result = await done
    const idleProcessMaxMs = await bystander.stop()
    bystander = undefined
    await writer.phase('after')
    const phases = await writer.stop()
    writer = undefined
    await reap(app)
    const check = methods[method].unchecked ? null : verifyCopy(result.copy.path, dbPath, lastId)
    return {
      durationMs: result.durationMs,
      // The bystander's window opens a little before the app's and closes a little after.
      eventLoop: { ...result.eventLoop, idleProcessMaxMs },
      memory: result.memory,
      firstBackupMs: result.firstBackupMs,
      writer: { idle: phases.idle, backup: phases.backup },
      lastId,
      check
    }
  } finally {
    writer?.kill()
    bystander?.kill()
    app.kill('SIGKILL')
    rmSync(scratchDir, { recursive: true, force: true })
  }
}
