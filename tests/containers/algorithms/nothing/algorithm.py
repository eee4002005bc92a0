"""Test algorithm: exits 0 without writing anything."""

print("nothing to do")
