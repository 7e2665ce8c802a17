import { open, rename, unlink, mkdir, lstat, chmod } from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'

// O_EXCL refuses to follow or reuse anything already at the path (a planted symlink included).
export const CREATE_EXCLUSIVE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW

/** Creates a new file with mode 0600 (backups hold all of the app's data), writes it and flushes it to disk. */
export async function writeNewFile (path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, CREATE_EXCLUSIVE, 0o600)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Creates an empty file with mode 0600, failing if anything exists at the path. */
export async function createEmptyFile (path: string): Promise<void> {
  const handle = await open(path, CREATE_EXCLUSIVE, 0o600)
  await handle.close()
}

/** Flushes a directory so that the renames and unlinks inside it survive a power loss. */
export async function syncDirectory (path: string): Promise<void> {
  const handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Renames within one directory and makes the new name durable. */
export async function renameDurably (from: string, to: string, directory: string): Promise<void> {
  await rename(from, to)
  await syncDirectory(directory)
}

/** Deletes a file if it exists. (fs.rm with force leaves a request in flight after it resolves.) */
export async function removeFile (path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** Flushes a file's data to disk. */
export async function flushFile (path: string): Promise<void> {
  const file = await open(path, 'r+')
  try {
    await file.datasync()
  } finally {
    await file.close()
  }
}

/**
 * Creates (0700) or checks a directory that may sit in a shared temp directory: it must be ours and private,
 * whoever created it.
 */
export async function ensurePrivateDirectory (path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 })
  const stats = await lstat(path)
  if (!stats.isDirectory()) throw new Error(`"${path}" is not a directory`)
  if (process.getuid && stats.uid !== process.getuid()) throw new Error(`"${path}" belongs to another user; set the "staging" option`)
  if ((stats.mode & 0o077) !== 0) await chmod(path, 0o700)
}
