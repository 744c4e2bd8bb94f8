"""``python -m smoothgan ARGS`` = ``smoothgan ARGS``; also the torchrun entry point:
``torchrun --nproc_per_node 8 -m smoothgan train DATA --preset celeba_hq``."""

from smoothgan.cli import main

if __name__ == "__main__":
    main()
