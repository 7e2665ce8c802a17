import { readdir } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { LocalDestination } from './destinations/local'
import { ensurePrivateDirectory, removeFile } from './durable-fs'
import { isProcessAlive } from './process-alive'
import type { DiskPace } from './io-pace'

// A download's owner: this host and boot (containers sharing a volume have their own host names and reuse process
// ids, so a process id alone says nothing), then the process id.
const DOWNLOAD = /^\.download-([0-9a-f]{8})-(\d+)-/
const THIS_HOST = createHash('sha256').update(`${hostname()}\n${bootId()}`).digest('hex').slice(0, 8)

/**
 * The local directory where each snapshot is taken before it is published, and where offsite backups are
 * downloaded to be read: the first local destination (a snapshot is then published there by a rename), or else a
 * private directory of its own (the `staging` option).
 */
export class Staging {
  /** The directory as a destination: its temp names and leftover cleanup are the same. */
  readonly destination: LocalDestination

  constructor (path: string, scope: string, readonly primary: LocalDestination | undefined, disk?: DiskPace) {
    this.destination = primary ?? new LocalDestination(path, scope, disk)
  }

  get path (): string {
    return this.destination.directory
  }

  /**
   * Creates the directory (again, if someone removed it since). A destination keeps the mode its owner gave it;
   * a private staging directory must be ours and 0700, since it may sit in a shared temp directory.
   */
  async ensure (): Promise<void> {
    if (this.primary) await this.primary.ensureDirectory()
    else await ensurePrivateDirectory(this.path)
  }

  /** Where a snapshot is taken (`name` makes it unique); only ever under the run lease. */
  snapshotPath (name: string): string {
    return this.destination.tempPath(name, 'sqlite')
  }

  /** A fresh path for a download of backup `id`, by verify or restore: owned by this process, lease or not. */
  downloadPath (id: string): string {
    return join(this.path, `.download-${THIS_HOST}-${process.pid}-${id}-${randomBytes(4).toString('hex')}`)
  }

  /** Removes the downloads of processes of this host that are gone (or of an earlier process with our id). */
  async removeDeadDownloads (): Promise<string[]> {
    const names = await readdir(this.path).catch(() => [])
    const dead = names.filter((name) => {
      const owner = DOWNLOAD.exec(name)
      if (owner === null || owner[1] !== THIS_HOST) return false
      const pid = Number(owner[2])
      return pid === process.pid || !isProcessAlive(pid)
    })
    for (const name of dead) await removeFile(join(this.path, name))
    return dead
  }
}

function bootId (): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}
