import torch

# The test networks are tiny: one intra-op thread per pytest worker is fastest and avoids
# oversubscribing the machine when workers run side by side.
torch.set_num_threads(1)
