"""A TFX ExampleGen for MovieLens "latest"-format folders (ratings.csv + movies.csv)."""
