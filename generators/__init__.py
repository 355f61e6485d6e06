"""The GRAM generator: cameras, manifold predictor, radiance network, renderer."""
from generators.generators import GramGenerator

GENERATOR_CLASSES = {'GramGenerator': GramGenerator}


def build_generator(config):
    """Build the generator described by config['generator'], rendering global.img_size by default."""
    spec = config['generator']
    if spec['class'] not in GENERATOR_CLASSES:
        raise ValueError(f"unknown generator class '{spec['class']}'; known: {', '.join(GENERATOR_CLASSES)}")
    return GENERATOR_CLASSES[spec['class']](
        img_size=config['global']['img_size'], **spec['kwargs'],
        representation_kwargs=spec['representation']['kwargs'],
        renderer_kwargs=spec['renderer']['kwargs'])
