"""Training diagnostics: numbers computed from renders that gauge mode and colour collapse."""
import torch

CHROMA_EPS = 1e-8   # added under the square root of a pixel's chroma magnitude (gradient at 0)
HUE_EPS = 1e-3      # added to the summed chroma magnitude (colourless images)


def latent_spread(images):
    """Mode-collapse gauge: images [K, 3, N, N] of K latents at one camera -> the mean over pixels
    and channels of the standard deviation over the K latents (0 when all images are equal)."""
    return images.float().std(dim=0).mean().item()


def hue_spread(images):
    """Colour-collapse gauge: images [K, 3, N, N] -> the std over the K latents of each image's
    mean hue (`mean_hue`), averaged over channels (0 when every latent has one colour; 0.45-0.46
    for the built-in cars' paints at 32 px)."""
    return mean_hue(images.float()).std(dim=0).mean().item()


def mean_hue(img):
    """Each image's mean hue: its pixels' chroma, summed and divided by their summed magnitude.

    Args:
        img: [B, C, H, W].
    Returns:
        [B, C]. A pixel's chroma is its deviation from its own grey level (mean over channels),
        so white, grey and black pixels add nothing; the ratio does not change with how much of
        the image a coloured object covers. A uniformly coloured object gives the unit direction
        of its chroma; a colourless image gives ~0.
    """
    chroma = img - img.mean(dim=1, keepdim=True)                                        # [B, C, H, W]
    magnitude = torch.sqrt(chroma.pow(2).sum(dim=1) + CHROMA_EPS)                # [B, H, W]
    return chroma.sum(dim=(2, 3)) / (magnitude.sum(dim=(1, 2)).unsqueeze(1) + HUE_EPS)  # [B, C]


def hue_over_objects_and_views(images):
    """Whether colour belongs to the object or to the camera.

    Args:
        images: [K, V, 3, H, W] (any value range): K objects, each seen from the same V views.
    Returns:
        (over_objects, over_views): the std of the mean hue (`mean_hue`) over the K
        objects at one view, averaged over views and channels; and its std over the V views of one
        object, averaged over objects and channels. Paint that belongs to the object gives
        over_views much smaller than over_objects; paint that follows the camera, the reverse.
    """
    num_objects, num_views = images.shape[:2]
    hue = mean_hue(images.flatten(0, 1).float()).view(num_objects, num_views, -1)  # [K, V, 3]
    return hue.std(dim=0).mean().item(), hue.std(dim=1).mean().item()
