import { statSync } from 'node:fs'
import Database from 'better-sqlite3'

/**
 * Tells in O(1), without reading the file, whether another connection committed since a given point:
 * `PRAGMA data_version` on a long-lived connection of our own changes whenever any other connection commits.
 * A connection stays on the file it opened, so the file at the path is also compared (by inode, with one stat)
 * to notice a database replaced by a rename.
 */
export class ChangeDetector {
  private db: Database.Database
  private identity: string | undefined

  constructor (private readonly path: string) {
    this.db = this.open()
  }

  /** The current data version, or `undefined` when it cannot be told (locked, replaced, being recovered). */
  version (): number | undefined {
    const identity = fileIdentity(this.path)
    if (identity !== this.identity) {
      // Replaced or gone: whatever this connection says is about the old file. A snapshot will tell the rest.
      if (identity !== undefined) {
        this.db.close()
        this.db = this.open()
      }
      return undefined
    }
    try {
      return this.db.pragma('data_version', { simple: true }) as number
    } catch (err) {
      // Locked, or a hot journal that a read-only connection cannot roll back: "maybe changed". The snapshot,
      // which waits for locks and recovers, will tell the real story.
      if (err instanceof Database.SqliteError) return undefined
      throw err
    }
  }

  journalMode (): string {
    return this.db.pragma('journal_mode', { simple: true }) as string
  }

  close (): void {
    this.db.close()
  }

  private open (): Database.Database {
    this.identity = fileIdentity(this.path)
    const db = new Database(this.path, { readonly: true, fileMustExist: true })
    // Never wait on the event loop: a busy database counts as "maybe changed" and the worker does the waiting.
    db.pragma('busy_timeout = 0')
    return db
  }
}

function fileIdentity (path: string): string | undefined {
  try {
    const { dev, ino } = statSync(path)
    return `${dev}:${ino}`
  } catch {
    return undefined
  }
}
