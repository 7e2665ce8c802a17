import Database from 'better-sqlite3'
import type { BackupMetadata, DrillResult } from '../types/index'
import type { DrillOptions } from './options'
import type { WorkerTaskOptions } from './worker/task-thread'
import { checksumOf } from './record'
import { verifyInWorker } from './verify'

/**
 * A restore drill: the published backup is opened read-only and checked as a restore would use it —
 * checksum and PRAGMA integrity_check in a worker thread, then the user's check. A SQL check runs in the worker;
 * a function check runs here, on the main thread, because functions cannot be sent to a worker.
 */
export async function runDrill (path: string, metadata: BackupMetadata, drill: DrillOptions, options: WorkerTaskOptions): Promise<DrillResult> {
  const at = new Date().toISOString()
  const problems = await verifyInWorker({ path, expected: checksumOf(metadata), check: drill.sql }, options)
  if (problems.length === 0 && drill.fn) {
    const problem = await runFunctionCheck(path, drill.fn)
    if (problem) problems.push(problem)
  }
  return { ok: problems.length === 0, at, problems }
}

async function runFunctionCheck (path: string, fn: NonNullable<DrillOptions['fn']>): Promise<string | undefined> {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const passed = await fn(db)
    return passed === true ? undefined : `the drill function returned ${JSON.stringify(passed ?? null)}`
  } catch (err) {
    return `the drill function threw: ${(err as Error).message}`
  } finally {
    db.close()
  }
}
