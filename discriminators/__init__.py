"""Discriminators, built from a config's 'discriminator' section."""
from discriminators.discriminators import GramDiscriminator

DISCRIMINATORS = {
    'GramDiscriminator': GramDiscriminator,
}


def build_discriminator(config):
    """Build the discriminator named in config['discriminator'] = {'class': name, 'kwargs': {...}}
    for images of global.img_size.

    The config is only read, never changed.
    """
    section = config['discriminator']
    name = section['class']
    if name not in DISCRIMINATORS:
        raise KeyError(f"unknown discriminator class '{name}'; valid names: {', '.join(DISCRIMINATORS)}")
    return DISCRIMINATORS[name](img_size=config['global']['img_size'], **section.get('kwargs', {}))
