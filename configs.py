"""Named training configurations.

Every config is a plain dict in the released layout::

    global        image size, per-GPU batch size, latent distribution
    optimizer     learning rates, Adam betas, gradient clipping
    process       batch split and loss weights
    generator     {'class', 'kwargs', 'representation': {...}, 'renderer': {...}}
    discriminator {'class', 'kwargs'}
    dataset       {'class', 'kwargs'}
    camera        field of view and ray range used for rendering

The released names stay reachable as module attributes (``configs.FFHQ_default``), but code
should call :func:`get_config`, which returns a deep copy: a config is never changed in place.
Each config is a small override of ``_BASE`` (the FFHQ setting), applied with :func:`_merge`.
"""
import ast
import copy
import math

# --------------------------------------------------------------------------------------------
# Base: the released FFHQ_default. Every knob is commented once here.
# --------------------------------------------------------------------------------------------
_BASE = {
    'global': {
        'img_size': 256,          # training resolution: generator output, D input, images resized to it
        'batch_size': 4,          # images per GPU per iteration (before batch_split)
        'z_dist': 'gaussian',     # latent prior: z ~ N(0, I)
    },
    'optimizer': {
        'gen_lr': 2e-5,           # Adam lr of the generator
        'disc_lr': 2e-4,          # Adam lr of the discriminator
        'betas': (0.0, 0.9),      # Adam betas (released: (0, 0.9); torch rejects the int 0)
        'grad_clip': 1.0,         # max gradient norm for G and D (0.3 if omitted)
        # optional: 'sampling_network_lr' -> own Adam group for the manifold predictor
        # optional: 'mapping_network_lr'  -> own Adam group for the FiLM mapping network
    },
    'process': {
        'batch_split': 4,         # the per-GPU batch is processed in this many chunks
        'real_pos_lambda': 15.0,  # weight of the pose loss on real images (0 disables it)
        'r1_lambda': 1.0,         # weight of the R1 gradient penalty on real images
        'pos_lambda': 15.0,       # weight of the pose loss on generated images
        'r1_interval': 1,         # apply R1 every this many steps (released: every step)
    },
    'generator': {
        'class': 'GramGenerator',
        'kwargs': {
            'z_dim': 256,             # latent size
            'h_stddev': 0.3,          # yaw spread of the training pose distribution
            'v_stddev': 0.155,        # pitch spread
            'h_mean': math.pi * 0.5,  # mean yaw (frontal)
            'v_mean': math.pi * 0.5,  # mean pitch (horizontal)
            'sample_dist': 'gaussian',  # gaussian | normal | uniform | spherical_uniform | fixed
        },
        'representation': {
            'class': 'gram',
            'kwargs': {
                'hidden_dim': 256,                 # SIREN width H
                'normalize': 0.24,                 # radiance-network input scale p * 2 / normalize
                'sigma_clamp_mode': 'softplus',    # softplus | relu
                'rgb_clamp_mode': 'widen_sigmoid',  # widen_sigmoid | sigmoid
                'hidden_dim_sample': 128,          # manifold-predictor width Hs
                'layer_num_sample': 3,             # manifold-predictor hidden layers
                'center': (0, 0, -1.5),            # predictor input offset (after scaling)
                'init_radius': 0,                  # predictor output bias = -init_radius
            },
        },
        'renderer': {
            'class': 'manifold_renderer',
            'kwargs': {
                'num_samples': 64,        # S: samples along each ray for the level search
                'num_manifolds': 24,      # L: surfaces per ray (including the background)
                'levels_start': 23,       # first (outermost) level value
                'levels_end': 8,          # last (innermost) level value
                'delta_alpha': 0.04,      # constant interval length for alpha compositing
                'last_back': False,       # give the leftover weight to the last slot
                'white_back': False,      # composite on white
                'background': True,       # add the background plane z = -0.12
            },
        },
    },
    'discriminator': {
        'class': 'GramDiscriminator',
        'kwargs': {},             # the input resolution is global.img_size
    },
    'dataset': {
        'class': 'FFHQ',
        'kwargs': {
            'real_pos': True,         # return the camera pose of each real image
            'dataset_path': 'data/ffhq',  # preprocessed folder (preprocess_dataset.py output)
        },
    },
    'camera': {
        'fov': 12.0,              # vertical field of view, degrees
        'ray_start': 0.88,        # nearest sample depth
        'ray_end': 1.12,          # farthest sample depth
    },
}


def _merge(base, override):
    """Return a deep copy of `base` with the nested dict `override` applied on top."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------------------------
# The three released configs (values: docs/design.md §6, "Configs").
# --------------------------------------------------------------------------------------------
FFHQ_default = _merge(_BASE, {})

CATS_default = _merge(_BASE, {
    'global': {'batch_size': 2},
    'process': {'batch_split': 2, 'real_pos_lambda': 30.0},
    'generator': {'representation': {'kwargs': {'hidden_dim_sample': 64}}},
    'dataset': {'class': 'CATS', 'kwargs': {'dataset_path': 'data/cats'}},
})

CARLA_default = _merge(_BASE, {
    'global': {'img_size': 128},
    'optimizer': {'grad_clip': 0.3, 'sampling_network_lr': 2e-6},
    'generator': {
        'kwargs': {
            'h_stddev': math.pi,
            'v_stddev': math.pi * (42.5 / 180),
            'h_mean': math.pi * 0.5,
            'v_mean': math.pi * (42.5 / 180),
            'sample_dist': 'spherical_uniform',
        },
        'representation': {'kwargs': {'hidden_dim_sample': 256, 'normalize': 2, 'center': (0, 0, 0)}},
        'renderer': {'kwargs': {
            'num_manifolds': 48, 'levels_start': 35, 'levels_end': 5,
            'delta_alpha': 0.02, 'white_back': True, 'background': False,
        }},
    },
    'dataset': {'class': 'CARLA', 'kwargs': {'dataset_path': 'data/carla'}},
    'camera': {'fov': 30.0, 'ray_start': 0.7, 'ray_end': 1.3},
})

# --------------------------------------------------------------------------------------------
# Small configs that run on a CPU.
# --------------------------------------------------------------------------------------------
# Unit tests and smoke runs: 16 px, narrow networks, few samples and manifolds.
TINY_test = _merge(CARLA_default, {
    'global': {'img_size': 16, 'batch_size': 2},
    'optimizer': {'sampling_network_lr': 2e-5},
    'process': {'batch_split': 1},
    'generator': {
        'kwargs': {'z_dim': 16},
        'representation': {'kwargs': {'hidden_dim': 16, 'hidden_dim_sample': 8}},
        'renderer': {'kwargs': {'num_samples': 12, 'num_manifolds': 6, 'levels_start': 35, 'levels_end': 5}},
    },
    'discriminator': {'kwargs': {'max_channels': 32}},
    'dataset': {'class': 'PosedImageFolder', 'kwargs': {'dataset_path': 'data/synthetic'}},
})

# The demo model: the built-in synthetic cars at 32 px, trainable on 2 CPU cores (docs/demo_model.md:
# the experiments behind each choice). Its data (preprocess_dataset.py --cate synthetic
# --config SYNTHETIC_demo) and its generator share a narrower pose range than CARLA's: azimuth
# within 45 degrees of the front, camera 15-45 degrees above the horizon. The mapping network
# learns slowly (keeps the generator's dependence on z). Colour keeps the released view
# dependence, charged by the view-consistency penalty (docs/design.md §6.3): without it, some
# training runs learned to paint by camera angle (docs/demo_model.md: ninth round; the penalty's
# run, the shipped model: twelfth round).
SYNTHETIC_demo = _merge(CARLA_default, {
    'global': {'img_size': 32, 'batch_size': 16},
    'optimizer': {'gen_lr': 2e-4, 'sampling_network_lr': 2e-5, 'mapping_network_lr': 1e-5, 'disc_lr': 4e-4},
    'process': {'batch_split': 1, 'pos_lambda': 0.0, 'real_pos_lambda': 0.0, 'r1_lambda': 10.0, 'r1_interval': 4,
                'view_consistency_lambda': 10.0},
    'generator': {
        'kwargs': {
            'z_dim': 64, 'sample_dist': 'uniform',
            'h_mean': math.pi / 2, 'h_stddev': math.pi / 4, 'v_mean': math.pi / 3, 'v_stddev': math.pi / 12,
        },
        'representation': {'kwargs': {'hidden_dim': 64, 'hidden_dim_sample': 32}},
        'renderer': {'kwargs': {'num_samples': 24, 'num_manifolds': 12, 'levels_start': 35, 'levels_end': 5}},
    },
    'discriminator': {'kwargs': {'max_channels': 64, 'minibatch_std_group': 4}},
    'dataset': {'class': 'PosedImageFolder', 'kwargs': {'dataset_path': 'data/synthetic_demo'}},
})

CONFIGS = {
    'FFHQ_default': FFHQ_default,
    'CATS_default': CATS_default,
    'CARLA_default': CARLA_default,
    'TINY_test': TINY_test,
    'SYNTHETIC_demo': SYNTHETIC_demo,
}


def get_config(name):
    """Return a deep copy of the config called `name`; unknown names list the valid ones."""
    if name not in CONFIGS:
        raise KeyError(f"unknown config '{name}'; valid names: {', '.join(CONFIGS)}")
    return copy.deepcopy(CONFIGS[name])


# Optional keys whose absence means a fixed value (the code's default, i.e. the released behaviour).
OPTIONAL_DEFAULTS = {
    'discriminator.kwargs.max_channels': 400,     # channel cap (released 400)
    'discriminator.kwargs.minibatch_std_group': 0,  # minibatch std group size (0 = off, released)
    'process.view_consistency_lambda': 0.0,       # colour-over-views penalty weight (ours; 0 = off, released)
}

# Sections whose builder receives global.img_size (the released configs repeated it in each).
IMG_SIZE_SECTIONS = ('generator', 'discriminator', 'dataset')

# Options of earlier versions that configs stored in checkpoints may still spell out, at the one
# value the code now implements.
RETIRED_DEFAULTS = {
    'discriminator.kwargs.minibatch_colour_std': False,
    'generator.renderer.kwargs.view_dependence': True,
}

# Keys a config may lack, with a value of the type they take. An absent learning rate has no
# fixed value: its module follows optimizer.gen_lr.
OPTIONAL_KEYS = {
    'optimizer.sampling_network_lr': 0.0,         # own lr for the manifold predictor
    'optimizer.mapping_network_lr': 0.0,          # own lr for the FiLM mapping network
    **OPTIONAL_DEFAULTS,
}


def with_optional_defaults(config):
    """Return a copy of `config` with every absent OPTIONAL_DEFAULTS key written out (where its
    section exists), so configs that differ only by spelling a default out compare equal."""
    config = copy.deepcopy(config)
    for path, value in OPTIONAL_DEFAULTS.items():
        *parents, leaf = path.split('.')
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(leaf, value)
    return config


def normalize(config):
    """Return a copy of `config` (e.g. one stored in a checkpoint) in the current layout.

    A per-section img_size (the released layout) must equal global.img_size and is dropped; a
    RETIRED_DEFAULTS key is dropped when it holds the value the code implements. Raises
    ValueError (one line) for anything else, since such a config describes another model.
    """
    config = copy.deepcopy(config)
    img_size = config['global']['img_size']
    for section in IMG_SIZE_SECTIONS:
        kwargs = config.get(section, {}).get('kwargs', {})
        section_size = kwargs.pop('img_size', img_size)
        if section_size != img_size:
            raise ValueError(f"config has global.img_size={img_size} but {section}.kwargs.img_size="
                             f"{section_size}; they must be equal")
    for path, value in RETIRED_DEFAULTS.items():
        *parents, leaf = path.split('.')
        node = config
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and leaf in node:
            if node.pop(leaf) != value:
                raise ValueError(f"config uses the retired option {path}; only {value} is supported now")
    return config


SAMPLE_DISTS = ('gaussian', 'normal', 'uniform', 'spherical_uniform', 'fixed')  # generator pose priors
Z_DISTS = ('gaussian',)                     # latent priors the training loop implements
MIN_IMG_SIZE, MAX_IMG_SIZE = 16, 512        # training resolutions the discriminator supports
MAX_FOV = 180.0                             # a field of view is in (0, 180) degrees


def validate(config):
    """Raise ValueError (one line naming the key and the valid range) for values no run can use.

    Checked before anything is built or written, so a bad --set fails at once.
    """
    def check(path, valid, expected):
        node = config
        for part in path.split('.'):
            if not isinstance(node, dict) or part not in node:
                return
            node = node[part]
        if not valid(node):
            raise ValueError(f"config value {path}={node!r} is invalid: expected {expected}; fix it with --set {path}=...")

    def power_of_two(value):
        return isinstance(value, int) and value > 0 and value & (value - 1) == 0

    def positive(value):
        return isinstance(value, (int, float)) and math.isfinite(value) and value > 0

    def non_negative(value):
        return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0

    check('global.img_size', lambda v: power_of_two(v) and MIN_IMG_SIZE <= v <= MAX_IMG_SIZE,
          f'a power of 2 in [{MIN_IMG_SIZE}, {MAX_IMG_SIZE}]')
    check('global.batch_size', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1')
    check('global.z_dist', lambda v: v in Z_DISTS, f'one of {Z_DISTS}')
    check('process.batch_split', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1')
    check('process.r1_interval', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1')
    for name in ('real_pos_lambda', 'r1_lambda', 'pos_lambda', 'view_consistency_lambda'):
        check(f'process.{name}', non_negative, 'a finite number >= 0')
    for name in ('gen_lr', 'disc_lr', 'sampling_network_lr', 'mapping_network_lr', 'grad_clip'):
        check(f'optimizer.{name}', positive, 'a finite number > 0')
    check('generator.kwargs.z_dim', lambda v: isinstance(v, int) and v >= 1, 'an int >= 1')
    check('generator.kwargs.sample_dist', lambda v: v in SAMPLE_DISTS, f'one of {SAMPLE_DISTS}')
    for name in ('h_stddev', 'v_stddev'):
        check(f'generator.kwargs.{name}', non_negative, 'a finite number >= 0')
    for name in ('h_mean', 'v_mean'):
        check(f'generator.kwargs.{name}', lambda v: isinstance(v, (int, float)) and math.isfinite(v), 'a finite number')
    check('generator.renderer.kwargs.num_samples', lambda v: isinstance(v, int) and v >= 2, 'an int >= 2')
    check('generator.renderer.kwargs.num_manifolds', lambda v: isinstance(v, int) and v >= 2, 'an int >= 2')
    check('camera.fov', lambda v: positive(v) and v < MAX_FOV, f'degrees in (0, {MAX_FOV:g})')
    check('camera.ray_start', positive, 'a finite number > 0')
    check('camera.ray_end', lambda v: positive(v) and v > config['camera']['ray_start'], 'a number > camera.ray_start')


def apply_overrides(config, assignments):
    """Return a copy of `config` with `key.path=value` assignments applied.

    Values are parsed as Python literals and must match the type of the value they replace
    (or, for a missing OPTIONAL_KEYS entry, the type listed there; an int may replace a float);
    unknown keys are refused so typos never pass silently.
    """
    config = copy.deepcopy(config)
    for assignment in assignments:
        if '=' not in assignment:
            raise ValueError(f"override '{assignment}' must look like section.key=value")
        path, text = assignment.split('=', 1)
        *parents, leaf = path.split('.')
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise KeyError(f"unknown config key '{path}' (no section '{part}')")
            node = node[part]
        if leaf not in node and path not in OPTIONAL_KEYS:
            raise KeyError(f"unknown config key '{path}'; known keys here: {', '.join(node)}")
        node[leaf] = _parse_like(text, node.get(leaf, OPTIONAL_KEYS.get(path)), path)
    return config


def _parse_like(text, current, path):
    """Parse `text` into the type of `current` (bool, int, float, str, tuple)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # bare words are strings
    if isinstance(current, bool) or isinstance(value, bool):
        if type(value) is not type(current):
            raise TypeError(f"config key '{path}' expects {type(current).__name__}, got '{text}'")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if type(value) is not type(current):
        raise TypeError(f"config key '{path}' expects {type(current).__name__}, got '{text}'")
    return value
