/** The ids to delete so that only the `keep` newest remain. Ids sort in time order, oldest first. */
export function expiredBackups (ids: readonly string[], keep: number): string[] {
  const sorted = [...ids].sort()
  return sorted.slice(0, Math.max(0, sorted.length - keep))
}
