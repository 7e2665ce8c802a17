import { stat } from 'node:fs/promises'
import Database from 'better-sqlite3'
import type { Checksum } from './record'
import type { ShouldStop } from './worker/protocol'
import { TaskFailure } from './worker/protocol'
import { runInWorker, type WorkerTaskOptions } from './worker/task-thread'
import { hashFile, checkDatabaseFile } from './worker/file-checks'

export interface VerifyJob {
  path: string
  /** From the backup's record; when missing, the checksum cannot be checked and that is a problem. */
  expected: Checksum | null
  /** A query whose first column must be truthy, e.g. `SELECT count(*) > 0 FROM posts`. */
  check?: string
}

/** Checks a backup in a worker thread and returns the problems found: none means it is sound. */
export async function verifyInWorker (job: VerifyJob, options: WorkerTaskOptions): Promise<string[]> {
  try {
    return await runInWorker<string[]>('verify', job, options)
  } catch (err) {
    if (err instanceof TaskFailure) return [`cannot read the backup: ${err.message}`]
    throw err
  }
}

/** Runs in a worker thread: size and sha256 against the record, PRAGMA integrity_check, and the optional check. */
export async function verifyBackupFile (job: VerifyJob, shouldStop: ShouldStop): Promise<string[]> {
  const problems: string[] = []
  if (job.expected === null) {
    problems.push('its metadata record is missing or unreadable, so its checksum cannot be checked')
  } else {
    const { size } = await stat(job.path)
    if (size !== job.expected.bytes) problems.push(`size is ${size} bytes, the record says ${job.expected.bytes}`)
    const { sha256 } = await hashFile(job.path, shouldStop)
    if (sha256 !== job.expected.sha256) problems.push(`sha256 is ${sha256}, the record says ${job.expected.sha256}`)
  }
  try {
    problems.push(...checkDatabaseFile(job.path, 'integrity_check').slice(0, 10).map((line) => `integrity_check: ${line}`))
  } catch (err) {
    problems.push(`integrity_check: ${(err as Error).message}`)
  }
  if (job.check !== undefined && problems.length === 0) {
    const problem = runCheck(job.path, job.check)
    if (problem) problems.push(problem)
  }
  return problems
}

function runCheck (path: string, sql: string): string | undefined {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const value = db.prepare(sql).pluck().get()
    return value ? undefined : `the check \`${sql}\` returned ${JSON.stringify(value ?? null)}`
  } catch (err) {
    return `the check \`${sql}\` failed: ${(err as Error).message}`
  } finally {
    db.close()
  }
}
