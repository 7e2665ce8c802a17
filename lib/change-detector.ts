import { statSync } from 'node:fs'
import Database from 'better-sqlite3'

declare const dataVersion: unique symbol

/**
 * What version() returns: compare two with `===` only. Equal means "read on the same connection, with no commit
 * in between"; a version read before a reopen never equals one read after it.
 */
export type DataVersion = string & { readonly [dataVersion]: true }

// Numbers every connection opened in this process, so that no two connections (of one detector or of two) can
// give the same version: `data_version` is a counter of one connection, which starts over at 1 on a new one.
let connections = 0

/**
 * Tells in O(1), without reading the file, whether another connection committed since a given point:
 * `PRAGMA data_version` on a long-lived connection of our own changes whenever any other connection commits.
 * A connection stays on the file it opened, so the file at the path is also compared (by inode, with one stat)
 * to notice a database replaced by a rename; the new file is then followed on a new connection, whose versions
 * never equal those of the old one.
 */
export class ChangeDetector {
  private db: Database.Database
  private identity: string | undefined
  private connection = 0

  constructor (private readonly path: string) {
    this.db = this.open()
  }

  /** The current data version, or `undefined` when it cannot be told (locked, replaced, being recovered). */
  version (): DataVersion | undefined {
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
      const counter = this.db.pragma('data_version', { simple: true }) as number
      return `${this.connection}:${counter}` as DataVersion
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
    this.connection = ++connections
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
