"""One rank of a launched bake: `python -m character_baker.bakers.distributed <output>/train/launch.json`."""

from .launch import main

raise SystemExit(main())
