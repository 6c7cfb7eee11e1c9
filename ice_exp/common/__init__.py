"""The shared leaf: what every layer may use and which imports nothing else of ice_exp (files written
whole, the polite stop, linear algebra, image resizing, the latent pool, face-part names, tables, progress
bars, console filters, CelebA's attribute names)."""
