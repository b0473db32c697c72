"""Blocks and calls written the existing SDK's way, through BlockTester and the real runtime."""
