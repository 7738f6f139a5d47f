import { NovaletError } from '../../config/novalet-error.js';

/** Every refusal of an image: by its URL's rules, by the download, or by the cache. */
export class ImageError extends NovaletError {}
