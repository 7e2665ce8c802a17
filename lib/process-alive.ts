/** Whether a process of this host (in this process's pid namespace) with this id exists. */
export function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // It exists, but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
