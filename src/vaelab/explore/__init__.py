"""vaelab-explore: the latent space of a trained run, live in the browser.

`space.LatentSpace` answers the page's questions through the model's interface (plain torch);
`app.create_app` serves it with FastAPI (the optional extra `pip install "vaelab[explore]"`);
`command.explore` is the console command. The page is static/ (plain HTML, JS and CSS).
"""
