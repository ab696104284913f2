"""Which latent-model components compose: each prior, posterior, objective and KL schedule says
what it needs (class attributes), and a combination that cannot work is refused in one line that
names both options, before anything trains.

Needs (Objective.requires, KLSchedule.requires):
- "gaussian_posterior": q(z|x) must be a diagonal Gaussian (beta-TCVAE scores every code under
  every image's posterior; DIP-VAE penalises its covariance);
- "kl_per_dim": a KL per latent dimension, so prior and posterior must both factorise
  (free bits; beta-TCVAE's dimension-wise KL).
- "one_latent_layer": the model's code is one flat layer drawn from one q(z|x) (beta-TCVAE,
  FactorVAE and DIP-VAE measure its total correlation or covariance), which a hierarchical model
  (model=hvae) is not;
- an objective that does not schedule the KL term (all but elbo) runs with the constant schedule
  only.
"""

import inspect

CONDITIONS = (None, "label", "attributes")


def _name(cls, group: str) -> str:
    return f"model/{group}={getattr(cls, 'name', cls.__name__)}"


def incompatibility(prior: type, posterior: type, objective: type, kl_schedule: type,
                    condition: str | None, hierarchical: bool = False) -> str | None:
    """Why these component classes cannot train together (one line), or None. `hierarchical`:
    the model has several latent layers (model=hvae), whose top layer the prior and posterior
    are."""
    if condition not in CONDITIONS:
        return (f"model.condition={condition!r} is not one of {list(CONDITIONS)} (null, label: "
                "a one-hot class, attributes: the data's binary attributes or factor values)")
    if condition is not None and not prior.conditional_ok:
        return (f"{_name(prior, 'prior')} is built from pseudo-inputs that carry no condition, so "
                f"it cannot serve model.condition={condition}: use model/prior=standard_normal "
                "or mixture_of_gaussians, or model.condition=null")
    if "kl_schedule" not in inspect.signature(objective).parameters and \
            getattr(kl_schedule, "name", None) != "constant":
        return (f"{_name(objective, 'objective')} does not schedule the KL term, so "
                f"{_name(kl_schedule, 'kl_schedule')} would be ignored: use "
                "model/kl_schedule=constant, or model/objective=elbo for a scheduled KL weight")
    for component, group in ((objective, "objective"), (kl_schedule, "kl_schedule")):
        needs = getattr(component, "requires", frozenset())
        if "one_latent_layer" in needs and hierarchical:
            return (f"{_name(component, group)} works on one flat latent layer, which model=hvae "
                    "(a hierarchy of layers) does not have: use model=vae, or "
                    "model/objective=elbo or iwae")
        if "gaussian_posterior" in needs and not posterior.gaussian:
            return (f"{_name(component, group)} needs a diagonal Gaussian q(z|x), which "
                    f"{_name(posterior, 'posterior')} is not: use "
                    "model/posterior=diagonal_gaussian")
        if "kl_per_dim" in needs and not (posterior.factorised and prior.factorised):
            culprit = (_name(prior, "prior") if not prior.factorised
                       else _name(posterior, "posterior"))
            return (f"{_name(component, group)} needs a KL per latent dimension, which does not "
                    f"exist with {culprit} (it does not factorise over dimensions): use "
                    "model/prior=standard_normal with model/posterior=diagonal_gaussian")
    return None


def check_components(prior: type, posterior: type, objective: type, kl_schedule: type,
                     condition: str | None, hierarchical: bool = False) -> None:
    """Raise a ValueError naming the conflict if the classes cannot train together."""
    problem = incompatibility(prior, posterior, objective, kl_schedule, condition, hierarchical)
    if problem:
        raise ValueError(problem)
