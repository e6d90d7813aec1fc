/** One page of a listing (its own file: the store's tables and MetadataStore both use it). */
export interface Page<T> {
  items: T[];
  /** Present when more items follow; opaque to callers. */
  nextMarker?: string | undefined;
}
