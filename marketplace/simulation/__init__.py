"""The market simulation: the real system (services and matching rounds) driven through simulated
days of seeded supply and demand, replayed under each placement policy and measured.

``scenario`` writes the script (pure, seeded), ``runner`` plays it against the database,
``measure`` reads the figures back, ``compare`` runs the policies side by side on fresh
databases, ``report`` writes the Markdown page and plots. ``manage.py simulate`` is the interface.
"""
